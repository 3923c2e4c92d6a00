import AMQP
import Contract
import Foundation
import PayFleetTesting
import Payments
import Postgres
import Store
import Testing

extension EndToEnd {
/// Payment exports and the archive on the real executables, with real crashes.
@Suite(.serialized) struct ExportArchiveEndToEndTests {
    /// 100,000 payments (hostile text among them) exported while the export worker dies after its
    /// first chunk: the restarted worker resumes, and the CSV parses back (Python's `csv`, an RFC
    /// 4180 reader) to exactly those payments, once each.
    @Test func anExportOf100000PaymentsSurvivesACrash() async throws {
        let once = FileManager.default.temporaryDirectory.appendingPathComponent("export-crash-\(UUID().uuidString)").path
        let fleet = try await LifecycleFleet.start(workers: ["export"], extra: ["export": [
            "PAYFLEET_FAULT_CRASH_AT": "after-export-chunk", "PAYFLEET_FAULT_ONCE": once, "PAYFLEET_EXPORT_CHUNK_ROWS": "5000",
        ]])
        defer { Task { await fleet.stop() } }
        let (merchantId, apiKey) = try await fleet.merchant(tier: "business")
        let pool = try TestEnvironment.postgres(size: 1)
        defer { Task { await pool.close() } }
        let day = UTCDay(containing: Date())
        try await Self.insertPayments(pool, merchantId: merchantId, count: 100_000, day: day)

        let created = try await fleet.post(apiKey, "/api/v1/merchant/payments/export",
                                           ["start_date": day.description, "end_date": day.description, "format": "csv"])
        #expect(created.status == 202, "\(created.text)")
        let taskId = try #require(created.json["task_id"] as? String)
        // The worker dies right after committing its first chunk.
        #expect(await eventually(timeout: .seconds(60)) { !fleet["export"].isRunning })
        let midway = try await fleet.get(apiKey, "/api/v1/merchant/exports/\(taskId)").json
        #expect(midway["status"] as? String == "processing" && midway["rows_done"] as? Int == 5_000 && midway["rows_total"] as? Int == 100_000,
                "\(midway)")
        let early = try await fleet.get(apiKey, "/api/v1/merchant/exports/\(taskId)/download")
        #expect(early.status == 409 && early.json["code"] as? String == "export_not_ready")
        try fleet["export"].restart()

        var task: [String: Any] = [:]
        let done = await eventually(timeout: .seconds(180), every: .milliseconds(500)) {
            task = (try? await fleet.get(apiKey, "/api/v1/merchant/exports/\(taskId)").json) ?? [:]
            return task["status"] as? String == "completed"
        }
        #expect(done, "\(task)")
        #expect(task["row_count"] as? Int == 100_000 && task["progress"] as? Int == 100 && task["expires_at"] is String)
        let file = try await fleet.get(apiKey, "/api/v1/merchant/exports/\(taskId)/download")
        #expect(file.status == 200)
        #expect(file.header("Content-Length") == String(file.body.count) && task["size"] as? Int == file.body.count)
        #expect(file.header("Content-Disposition")?.hasPrefix("attachment; filename=") == true)
        #expect(Array(file.body.prefix(3)) == [0xEF, 0xBB, 0xBF])
        let digest = SHA256Hex.of(file.body)
        #expect(task["sha256"] as? String == digest)

        // Parsed back by Python's csv module: every payment exactly once, cells as the database has them.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(taskId).csv")
        try file.body.write(to: path)
        let parsed = try Self.python("""
            import csv, json, sys
            with open(sys.argv[1], newline='', encoding='utf-8-sig') as f:
                rows = list(csv.DictReader(f))
            ids = [r['payment_no'] for r in rows]
            crlf = open(sys.argv[1], 'rb').read().count(b'\\r\\n')
            print(json.dumps({'count': len(rows), 'unique': len(set(ids)), 'header': list(rows[0].keys()), 'crlf': crlf,
                              'sample': [r for r in rows if r['payment_no'].endswith('-7')][:1],
                              'amounts': sorted({r['currency'] + ' ' + r['amount'] for r in rows if r['payment_no'].endswith(('-1', '-2', '-3'))})}))
            """, path.path)
        #expect(parsed["count"] as? Int == 100_000 && parsed["unique"] as? Int == 100_000, "\(parsed)")
        #expect(parsed["header"] as? [String] == ExportCSV.columns)
        #expect((parsed["crlf"] as? Int ?? 0) >= 100_001, "every record ends in CRLF")
        let sample = (parsed["sample"] as? [[String: String]])?.first ?? [:]
        #expect(sample["order_no"] == "'=HYPERLINK(\"http://x\",\"y\")-7", "a formula is guarded, quotes survive: \(sample)")
        #expect(sample["subject"] == "café, \"quoted\"\r\nline", "\(sample)")
        #expect(sample["failure_message"] == "'-1+1")
        let amounts = Set(parsed["amounts"] as? [String] ?? [])
        #expect(amounts.isSuperset(of: ["JPY 1234", "BTC 0.00012345", "USD 12.34"]), "\(amounts)")
        let ids = try await pool.query("SELECT count(*) AS n FROM payments WHERE merchant_id = $1", [merchantId]).rows[0].int("n")
        #expect(ids == 100_000)
    }

    /// Every bad export request gets its own problem; another merchant's task is not found; an
    /// expired export is gone (410).
    @Test func exportRequestsThatAreRefused() async throws {
        let fleet = try await LifecycleFleet.start(workers: ["export"])
        defer { Task { await fleet.stop() } }
        let (_, apiKey) = try await fleet.merchant(tier: "business")
        let (_, otherKey) = try await fleet.merchant(tier: "business")
        func field(_ body: [String: Any]) async throws -> String? {
            let reply = try await fleet.post(apiKey, "/api/v1/merchant/payments/export", body)
            guard reply.status == 400, reply.header("Content-Type")?.hasPrefix("application/problem+json") == true else { return "status \(reply.status)" }
            return (reply.json["errors"] as? [[String: Any]])?.first?["field"] as? String
        }
        #expect(try await field(["start_date": "2025-01-01", "end_date": "2026-01-02"]) == "end_date")   // 367 days
        #expect(try await field(["start_date": "2026-12-02", "end_date": "2026-12-01"]) == "end_date")   // end before start
        #expect(try await field(["start_date": "2026-12-1", "end_date": "2026-12-01"]) == "start_date")   // not YYYY-MM-DD
        #expect(try await field(["start_date": "2026-12-01", "end_date": "2026-12-01", "format": "xlsx"]) == "format")

        let today = UTCDay(containing: Date()).description
        let created = try await fleet.post(apiKey, "/api/v1/merchant/payments/export", ["start_date": today, "end_date": today])
        let taskId = try #require(created.json["task_id"] as? String)
        #expect(try await fleet.get(otherKey, "/api/v1/merchant/exports/\(taskId)").status == 404)
        #expect(try await fleet.get(otherKey, "/api/v1/merchant/exports/\(taskId)/download").status == 404)
        let done = await eventually {
            (try? await fleet.get(apiKey, "/api/v1/merchant/exports/\(taskId)").json["status"] as? String) == "completed"
        }
        #expect(done)
        let empty = try await fleet.get(apiKey, "/api/v1/merchant/exports/\(taskId)/download")
        #expect(empty.status == 200 && empty.text.hasPrefix("\u{FEFF}payment_no,order_no,"), "an empty day is a header only")

        // The hourly cleanup, a day later (sandbox clock): expired, and its file gone.
        let cleanup = CloudEvent(id: MessageIds.newCommandId(), type: "export.cleanup", source: "/test/clock", time: nil, merchantId: nil,
                                 data: ["now": Timestamp.format(Date().addingTimeInterval(25 * 3_600))])
        try await Fixtures.publishAll([try Fixtures.message(cleanup)], on: fleet.broker)
        let expired = await eventually {
            (try? await fleet.get(apiKey, "/api/v1/merchant/exports/\(taskId)").json["status"] as? String) == "expired"
        }
        #expect(expired)
        let gone = try await fleet.get(apiKey, "/api/v1/merchant/exports/\(taskId)/download")
        #expect(gone.status == 410 && gone.json["code"] as? String == "export_expired", "\(gone.text)")
    }

    /// An archive run that crashes mid-run (as `kill -9` would: no cleanup, no ack): every old row
    /// is in the live table or the archive, exactly once, at every moment; the redelivered run goes
    /// on and reports every row it moved.
    @Test func anArchiveRunSurvivesKill9() async throws {
        // 120 batches with a 20 ms pause each take over 2 s: with 1 s slices the run must hand over
        // to follow-up commands, as a long run does to stay inside RabbitMQ's consumer_timeout.
        // The worker dies right after its 4th batch committed (a kill timed from outside could
        // land after the run ended on a loaded machine).
        let once = FileManager.default.temporaryDirectory.appendingPathComponent("archive-crash-\(UUID().uuidString)").path
        let fleet = try await LifecycleFleet.start(workers: ["archive"], extra: ["archive": [
            "PAYFLEET_ARCHIVE_PAUSE_MS": "20", "PAYFLEET_ARCHIVE_BATCH": "audit_logs=500", "PAYFLEET_ARCHIVE_SLICE_SECONDS": "1",
            "PAYFLEET_FAULT_CRASH_AT": "after-archive-batch", "PAYFLEET_FAULT_AFTER": "4", "PAYFLEET_FAULT_ONCE": once,
        ]])
        defer { Task { await fleet.stop() } }
        let pool = try TestEnvironment.postgres(size: 1)
        defer { Task { await pool.close() } }
        let target = TestEnvironment.unique("archive-target")
        let old = 60_000, recent = 100
        _ = try await pool.query("""
            INSERT INTO audit_logs (action, target, operator, reason, created_at)
            SELECT 'test', $1, 'e2e', 'row ' || i, now() - interval '200 days' + i * interval '1 ms' FROM generate_series(1, $2) i
            UNION ALL
            SELECT 'test', $1, 'e2e', 'recent ' || i, now() - interval '10 days' FROM generate_series(1, $3) i
            """, [target, old, recent])
        let system = try await EventSubscriber(bindingKey: "sys.archive.#")
        let run = CloudEvent(id: MessageIds.newCommandId(), type: "archive.run", source: "/test/operator", time: nil, merchantId: nil,
                             data: ["tables": ["audit_logs"]])
        try await Fixtures.publishAll([try Fixtures.message(run)], on: fleet.broker)

        func counts() async throws -> (live: Int, archived: Int, both: Int) {
            let row = try await pool.query("""
                SELECT (SELECT count(*) FROM audit_logs WHERE target = $1) AS live,
                       (SELECT count(*) FROM audit_logs_archive WHERE target = $1) AS archived,
                       (SELECT count(*) FROM audit_logs l JOIN audit_logs_archive a USING (id) WHERE l.target = $1) AS both
                """, [target]).rows[0]
            return (try row.int("live"), try row.int("archived"), try row.int("both"))
        }
        #expect(await eventually(timeout: .seconds(60)) { !fleet["archive"].isRunning }, "crashed after its 4th batch")
        let killed = try await counts()
        #expect(killed.live + killed.archived == old + recent && killed.both == 0, "\(killed)")
        #expect(killed.live > recent && killed.archived <= 2_000, "killed mid-run, after four batches of 500: \(killed)")

        try fleet["archive"].restart()
        let completed = await system.wait(timeout: .seconds(120)) { $0.contains { $0.type == "archive.completed" } }
            .first { $0.type == "archive.completed" }
        let after = try await counts()
        #expect(after.live == recent && after.archived == old && after.both == 0, "\(after)")
        let moved = (completed?.data["moved"] as? [String: Any])?["audit_logs"] as? Int ?? 0
        #expect(moved >= old, "the run counts the rows moved before the crash too: \(String(describing: completed?.json))")
        let slices = system.events.filter { $0.type == "archive.progress" && $0.data["run_id"] as? String == "archive:\(run.id)" }
        #expect(!slices.isEmpty, "the run continued in follow-up commands")
        #expect(completed?.data["run_id"] as? String == "archive:\(run.id)" && completed?.data["finished"] as? Bool == true)
        await system.close()
    }

    // MARK: - helpers

    /// `count` payments of one day in one statement, every 10th with text made to break a CSV or
    /// a spreadsheet, in several currencies.
    static func insertPayments(_ pool: PostgresPool, merchantId: String, count: Int, day: UTCDay) async throws {
        _ = try await pool.query("""
            INSERT INTO payments (payment_no, merchant_id, order_no, amount, currency, country, pay_method, channel, status, refunded_amount,
                channel_fee, subject, failure_message, metadata, command_id, created_at, updated_at, counted_at)
            SELECT 'pay_exp_' || $1 || '-' || i, $1,
                CASE WHEN i % 10 = 7 THEN '=HYPERLINK("http://x","y")-' || i ELSE 'order-' || i END,
                CASE i % 10 WHEN 1 THEN 1234 WHEN 2 THEN 12345 WHEN 3 THEN 1234 ELSE 1000 + i END,
                CASE i % 10 WHEN 1 THEN 'JPY' WHEN 2 THEN 'BTC' ELSE 'USD' END,
                'US', 'card', 'stripe', CASE WHEN i % 10 = 5 THEN 'partially_refunded' ELSE 'succeeded' END,
                CASE WHEN i % 10 = 5 THEN 100 ELSE 0 END, 30,
                CASE WHEN i % 10 = 7 THEN E'café, "quoted"\\r\\nline' ELSE 'subject ' || i END,
                CASE WHEN i % 10 = 7 THEN '-1+1' END,
                jsonb_build_object('i', i::text), 'cmd-' || i,
                $2::timestamptz + (i * interval '1 ms'), $2::timestamptz + (i * interval '1 ms'), $2::timestamptz
            FROM generate_series(1, $3) i
            """, [merchantId, day.start.addingTimeInterval(60), count])
    }

    /// Runs a Python script (argv[1...] = `arguments`) and decodes its one line of JSON output.
    static func python(_ script: String, _ arguments: String...) throws -> [String: Any] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script] + arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (try JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
    }
}
}

/// SHA-256 as lowercase hex.
enum SHA256Hex {
    static func of(_ data: Data) -> String {
        var hasher = Crypto.SHA256()
        hasher.update(data: data)
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

import Crypto
