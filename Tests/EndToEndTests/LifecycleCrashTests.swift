import AMQP
import Contract
import Foundation
import PayFleetTesting
import Payments
import Postgres
import Redis
import Store
import Testing

extension EndToEnd {
/// The capture worker killed in the middle of captures and refunds, and two clocks racing for
/// the same slots.
@Suite(.serialized) struct LifecycleCrashTests {
    static func command<T: Codable & Sendable>(_ type: String, merchantId: String, key: String, data: T) -> CloudEvent<T> {
        CloudEvent(id: MessageIds.newCommandId(), type: type, source: "/test", time: nil, merchantId: merchantId, idempotencyKey: key,
                   data: data)
    }

    /// Publishes `commands` and crashes `worker` at its `killAt`-th commit (as `kill -9`), then
    /// restarts it and waits until every command has an event of each of `types` (events of
    /// different resources travel independently: a killed relay's leased rows wait for their
    /// lease to end). Returns the outcome events by command id.
    /// Each command's events: for each event type, the distinct ids it was published with.
    /// `progress` counts what has committed (read from PostgreSQL: events lag behind commits).
    static func publish<T: Codable & Sendable>(_ commands: [CloudEvent<T>], expecting types: Set<String>, killing worker: FleetProcess, at killAt: Int,
                                               progress: @escaping () async throws -> Int,
                                               on broker: AMQPConnection, events: EventSubscriber) async throws -> [String: [String: Set<String>]] {
        let ids = Set(commands.map(\.id))
        func outcomes() -> [String: [String: Set<String>]] {
            events.events.filter { ids.contains($0.correlationId ?? "") }
                .reduce(into: [:]) { $0[$1.correlationId!, default: [:]][$1.type, default: []].insert($1.eventId) }
        }
        // The batch is queued while the worker is down; it then dies (`_exit(137)`, as `kill -9`)
        // right after its `killAt`-th commit, before that command's events go out or its delivery
        // is acked. A fault point, not a timed kill: on a fast machine a timed kill could land
        // after the whole batch while the loaded test process was not polling.
        await worker.terminate()
        try await Fixtures.publishAll(try commands.map { try Fixtures.message($0) }, on: broker)
        try worker.restart(environment: FleetProcess.crashing(afterCommit: killAt))
        #expect(await worker.waitForExit(timeout: .seconds(120)) == 137, "the worker must crash at its commit \(killAt)")
        let atKill = try await progress()
        #expect(atKill >= killAt && atKill < commands.count, "killed in the middle (\(atKill) of \(commands.count) done)")
        try worker.restart(environment: FleetProcess.unfaulted)
        #expect(await eventually(timeout: .seconds(120)) {
            let current = outcomes()
            return current.count == commands.count && current.values.allSatisfy { types.isSubset(of: $0.keys) }
        }, "\(outcomes().count) of \(commands.count)")
        return outcomes()
    }

    /// `kill -9` of the capture worker in the middle of 500 captures, and again in the middle of
    /// 500 refunds: none lost, none doubled, the ledger equal to PostgreSQL.
    @Test func killNineOfTheCaptureWorkerInTheMiddleOfCapturesAndRefunds() async throws {
        // A channel answering in 10 ms, as a real one might: other commands are in flight when
        // the worker dies at its 100th commit of each batch.
        let fleet = try await LifecycleFleet.start(workers: ["authorize", "capture"], extra: ["capture": ["PAYFLEET_SANDBOX_LATENCY_MS": "10"]])
        defer { Task { await fleet.stop() } }
        let pool = try TestEnvironment.postgres(size: 2)
        let redis = try TestEnvironment.redis()
        let (merchantId, _) = try await fleet.merchant(tier: "premium")
        let events = try await EventSubscriber.outcomes(of: merchantId)
        let holds = (0..<250).map { index in
            Self.command("preauth.create", merchantId: merchantId, key: "hold-\(index)", data: PreAuthRequest(payment: PaymentRequest(
                orderNo: "room-\(index)", amount: 10_000, currency: .USD, country: "US", payMethod: .card)))
        }
        try await Fixtures.publishAll(try holds.map { try Fixtures.message($0) }, on: fleet.broker)
        #expect(await eventually(timeout: .seconds(120)) { events.events.filter { $0.type == "preauth.authorized" }.count == 250 })
        let numbers = holds.map { Identifiers.preAuthNo(merchantId: merchantId, idempotencyKey: $0.idempotencykey!) }

        // Two captures of 3,000 per hold, then a refund of 1,000 of each capture.
        let captures = numbers.flatMap { number in
            (1...2).map { Self.command("preauth.capture", merchantId: merchantId, key: "\(number)-cap-\($0)",
                                       data: CaptureRequest(preAuthNo: number, amount: 3_000)) }
        }
        let captured = try await Self.publish(captures, expecting: ["payment.succeeded", "preauth.captured"], killing: fleet["capture"], at: 100, progress: {
            try await pool.query("SELECT count(*) AS n FROM payments WHERE merchant_id = $1", [merchantId]).rows[0].int("n")
        }, on: fleet.broker, events: events)
        // Each capture: a payment.succeeded and a preauth.captured, each with one id however often re-emitted.
        #expect(captured.values.allSatisfy { $0.keys.sorted() == ["payment.succeeded", "preauth.captured"] && $0.values.allSatisfy { $0.count == 1 } },
                "\(captured.values.filter { $0.count != 2 || $0.values.contains { $0.count != 1 } }.prefix(3))")
        let refunds = captures.map { capture in
            Self.command("payment.refund", merchantId: merchantId, key: "\(capture.idempotencykey!)-refund",
                         data: RefundRequest(paymentNo: Identifiers.capturePaymentNo(merchantId: merchantId, captureKey: capture.idempotencykey!),
                                             amount: 1_000, reason: "partial"))
        }
        let refunded = try await Self.publish(refunds, expecting: ["payment.refunded"], killing: fleet["capture"], at: 100, progress: {
            try await pool.query("SELECT count(*) AS n FROM refunds WHERE merchant_id = $1", [merchantId]).rows[0].int("n")
        }, on: fleet.broker, events: events)
        #expect(refunded.values.allSatisfy { $0.keys.sorted() == ["payment.refunded"] && $0.values.allSatisfy { $0.count == 1 } })
        let rejected = events.events.filter { $0.type == "command.rejected" }
        #expect(rejected.isEmpty, "\(rejected.prefix(3).map(\.data))")

        // PostgreSQL: every hold captured twice, every capture refunded once; nothing more.
        let state = try await pool.query("""
            SELECT count(*) AS holds, sum(captured_amount) AS captured, min(capture_count) AS least, max(capture_count) AS most
            FROM pre_authorizations WHERE merchant_id = $1
            """, [merchantId]).rows[0]
        #expect(try state.int("holds") == 250 && state.int64("captured") == 1_500_000 && state.int("least") == 2 && state.int("most") == 2)
        let payments = try await pool.query("""
            SELECT count(*) AS n, sum(amount) AS amount, sum(refunded_amount) AS refunded, count(*) FILTER (WHERE status = 'partially_refunded') AS partly
            FROM payments WHERE merchant_id = $1
            """, [merchantId]).rows[0]
        #expect(try payments.int("n") == 500 && payments.int64("amount") == 1_500_000 && payments.int64("refunded") == 500_000
                && payments.int("partly") == 500)
        #expect(try await pool.query("SELECT count(*) AS n FROM refunds WHERE merchant_id = $1", [merchantId]).rows[0].int("n") == 500)
        // The channel saw one capture and one refund per key (a redelivered call reuses its key).
        let calls = try await pool.query("""
            SELECT count(*) AS keys FROM sandbox_channel_calls
            WHERE resource = ANY($1::text[]) AND operation IN ('capture', 'refund')
            """, ["{" + (numbers + captures.map { Identifiers.capturePaymentNo(merchantId: merchantId, captureKey: $0.idempotencykey!) })
                .joined(separator: ",") + "}"]).rows[0]
        #expect(try calls.int("keys") == 1_000)
        // The ledger equals PostgreSQL: 250 holds of 10,000 still held (6,000 captured, 4,000 open),
        // less the 2,000 of each hold refunded: 2,000,000.
        let windows = LimitWindows(at: Date())
        let usage = try await LimitLedger(redis: redis).usage(merchantId: merchantId, windows: windows)
        let recorded = try await pool.withConnection { try await LimitRecord.recorded(merchantId: merchantId, windows: windows, on: $0) }
        #expect(usage.day == 2_000_000 && recorded.day == 2_000_000 && usage.month == recorded.month, "\(usage) \(recorded)")
        await events.close()
        await redis.close()
        await pool.close()
    }

    /// Two clocks on a 2-second timeout sweep: one leads, and each slot is published once. On
    /// SIGTERM the leader stops cleanly and gives its lease up, and the other takes over.
    @Test func twoClockProcessesRunEachSlotOnce() async throws {
        let commands = try await EventSubscriber(exchange: "payfleet.commands", bindingKey: "payment.timeout")
        let flags = ["--timeout-sweep-interval", "2", "--expiry-sweep-interval", "3600", "--settlement-interval", "86400",
                     "--archive-interval", "604800", "--export-cleanup-interval", "3600", "--lease", "10"]
        var clocks: [FleetProcess] = [], ports: [Int] = []
        for _ in 0..<2 {
            let port = FleetProcess.freePort()
            let clock = try FleetProcess("payfleet-clock", arguments: flags, environment: ["PAYFLEET_HEALTH_PORT": "\(port)"])
            try await clock.waitUntilReady(port: port)
            clocks.append(clock)
            ports.append(port)
        }
        defer { clocks.forEach { $0.stop() } }
        func slots() -> [String: Int] {
            commands.events.compactMap { $0.json["idempotencykey"] as? String }.filter { $0.hasPrefix("payment.timeout@") }
                .reduce(into: [:]) { $0[$1, default: 0] += 1 }
        }
        #expect(await eventually(timeout: .seconds(30)) { slots().count >= 4 })
        #expect(slots().values.allSatisfy { $0 == 1 }, "\(slots())")
        let leaders = clocks.filter { $0.log.contains("published scheduled command") }
        #expect(leaders.count == 1, "one clock leads")

        // The leader counts what it ran on its /metrics.
        let leader = try #require(leaders.first), follower = try #require(clocks.first { $0 !== leader })
        let metrics = try await HTTP.get("http://127.0.0.1:\(ports[clocks.firstIndex { $0 === leader }!])/metrics").text
        #expect(metrics.contains(#"payfleet_clock_slots_total{status="completed",task="payment.timeout"}"#)
                || metrics.contains(#"payfleet_clock_slots_total{task="payment.timeout",status="completed"}"#), "\(metrics.prefix(2_000))")

        // The leader stops cleanly; the other takes over at once (the lease was released).
        let before = slots().count
        #expect(await leader.terminate() == 0)
        #expect(await eventually(timeout: .seconds(20)) { slots().count >= before + 2 })
        #expect(follower.log.contains("published scheduled command"))
        #expect(slots().values.allSatisfy { $0 == 1 }, "still once each: \(slots())")

        let pool = try TestEnvironment.postgres(size: 1)
        let rows = try await pool.query("""
            SELECT status, count(*) AS n FROM scheduled_tasks WHERE task = 'payment.timeout' AND slot >= now() - interval '2 minutes'
            GROUP BY status
            """, []).rows
        let byStatus = Dictionary(uniqueKeysWithValues: try rows.map { (try $0.string("status"), try $0.int("n")) })
        #expect((byStatus["completed"] ?? 0) >= slots().count - 1 && byStatus["failed"] == nil, "\(byStatus)")
        await pool.close()
        await commands.close()
    }
}
}
