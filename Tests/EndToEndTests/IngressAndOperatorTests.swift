import AMQP
import Foundation
import PayFleetTesting
import Payments
import Postgres
import Store
import Testing

/// The ingress's edge cases and the operator's CLI, with the real executables.
/// Serialized with the other end-to-end suite's habits: each test starts what it needs.
extension EndToEnd {
@Suite(.serialized) struct IngressAndOperatorTests {
    static let adminToken = "test-admin-token-0123456789"

    static func ingress(replyTimeoutMs: Int = 5_000) async throws -> (FleetProcess, String) {
        let port = FleetProcess.freePort()
        let process = try FleetProcess("payfleet-ingress", environment: [
            "PAYFLEET_HTTP_PORT": "\(port)", "PAYFLEET_ADMIN_TOKEN": adminToken,
            "PAYFLEET_REPLY_TIMEOUT_MS": "\(replyTimeoutMs)",
        ])
        try await process.waitUntilReady(port: port)
        return (process, "http://127.0.0.1:\(port)")
    }

    static func body(amount: Int = 5_000, orderNo: String = "order-1") -> Data {
        try! JSONSerialization.data(withJSONObject: ["order_no": orderNo, "amount": amount, "currency": "USD", "country": "US",
                                                     "pay_method": "card"])
    }

    @Test func aKeyInFlightAnswers409AndATimeoutAnswers202() async throws {
        // No authorize worker runs in this test, so the first request waits for its outcome.
        let (ingress, base) = try await Self.ingress(replyTimeoutMs: 3_000)
        defer { ingress.stop() }
        let pool = try TestEnvironment.postgres(size: 1)
        let (merchant, apiKey) = try await Fixtures.merchant(pool)
        let headers = ["Authorization": "Bearer \(apiKey)", "Content-Type": "application/json", "Idempotency-Key": "in-flight"]
        async let first = HTTP.post("\(base)/api/v1/payments", headers: headers, body: Self.body())
        // The second request goes once the first holds the key (not after a guessed delay: on a
        // loaded machine the first may take longer to get there).
        #expect(try await eventually {
            try await pool.query("SELECT 1 FROM http_idempotency WHERE merchant_id = $1 AND idempotency_key = 'in-flight' AND state = 'in_flight'",
                                 [merchant.merchantId]).rows.count == 1
        })
        let second = try await HTTP.post("\(base)/api/v1/payments", headers: headers, body: Self.body())
        #expect(second.status == 409)
        #expect(second.json["code"] as? String == "idempotency_key_in_use")
        let answered = try await first
        #expect(answered.status == 202, "no outcome within the timeout: accepted, not failed")
        #expect(answered.json["status"] as? String == "processing")
        #expect(answered.header("Location")?.hasPrefix("/api/v1/payments/pay_") == true)
        let replay = try await HTTP.post("\(base)/api/v1/payments", headers: headers, body: Self.body())
        #expect(replay.status == 202)
        #expect(replay.header("Idempotent-Replayed") == "true")
        await pool.close()
    }

    @Test func parkedMessagesCanBeListedShownAndReplayed() async throws {
        let pool = try TestEnvironment.postgres(size: 1)
        let merchant = try await Fixtures.merchant(pool).merchant
        let broker = try await TestEnvironment.amqp("parker")
        // A valid command parked by hand, as a worker parks one (reason in a header).
        let command = Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: 2_500)
        var message = try Fixtures.message(command, exchange: "payfleet.parking", routingKey: "payfleet.authorize")
        message.properties.headers = ["x-parked-reason": .string("test: parked by hand"), "x-parked-queue": .string("payfleet.authorize")]
        #expect(try await broker.publish(message) == .acked)

        let list = try await Self.cli(["parked", "list"])
        #expect(list.contains(command.id) && list.contains("test: parked by hand"), "\(list)")
        let show = try await Self.cli(["parked", "show", command.id])
        #expect(show.contains("\"amount\":2500"), "\(show)")

        let worker = try FleetProcess("payfleet-authorize", environment: ["PAYFLEET_HEALTH_PORT": "\(FleetProcess.freePort())"])
        defer { worker.stop() }
        let replay = try await Self.cli(["parked", "replay", command.id])
        #expect(replay.contains("replayed \(command.id) to payfleet.authorize"), "\(replay)")
        #expect(try await eventually {
            try await pool.query("SELECT 1 FROM payments WHERE command_id = $1", [command.id]).rows.count == 1
        })
        #expect(!(try await Self.cli(["parked", "list"])).contains(command.id))
        await broker.close()
        await pool.close()
    }

    @Test func aWorkerExposesItsQueueMetrics() async throws {
        let port = FleetProcess.freePort()
        let worker = try FleetProcess("payfleet-authorize", environment: ["PAYFLEET_HEALTH_PORT": "\(port)"])
        defer { worker.stop() }
        try await worker.waitUntilReady(port: port)
        let pool = try TestEnvironment.postgres(size: 1)
        let merchant = try await Fixtures.merchant(pool).merchant
        let broker = try await TestEnvironment.amqp("metrics upstream")
        try await Fixtures.publishAll([try Fixtures.message(Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: 1_000)),
                                       Fixtures.message(Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: 1_000),
                                                        routingKey: "payment.create")], on: broker)
        _ = try await eventually { try await Fixtures.paymentCount(pool, merchant.merchantId) == 2 }
        // A payment's row commits before its command ends (the relay, the ack): read the metrics
        // once nothing is in flight. A gauge left above 0 on an idle worker fails here.
        func inFlight(_ metrics: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix("payfleet_commands_in_flight{") }
                .flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        var metrics = ""
        let idle = try await eventually(timeout: .seconds(60)) {
            metrics = try await HTTP.get("http://127.0.0.1:\(port)/metrics").text
            return inFlight(metrics) == 0
        }
        #expect(idle, "nothing in flight once all is done: \(inFlight(metrics).map { "\($0)" } ?? "no gauge")")
        for name in ["payfleet_commands_consumed_total", "payfleet_commands_succeeded_total", "payfleet_commands_in_flight",
                     "payfleet_command_handling_seconds_bucket", "payfleet_outbox_published_total"] {
            #expect(metrics.contains(name), "missing \(name)")
        }
        let consumed = metrics.split(separator: "\n").first { $0.hasPrefix("payfleet_commands_consumed_total{queue=\"payfleet.authorize\"}") }
        #expect(consumed.flatMap { Double($0.split(separator: " ").last ?? "") }.map { $0 >= 2 } == true, "\(consumed ?? "none")")
        await broker.close()
        await pool.close()
    }

    /// SIGTERM stops a process well within its graceful deadline, cleanly. The worker waited out
    /// its limit sync's interval (an hour here) and, past its 2 s deadline, ServiceLifecycle
    /// stopped it with a fatal error; the ingress's reply pump never ended, so every stop ran into
    /// the 15 s deadline and its relay's flush spun, cancelled, until "the shutdown deadline".
    @Test func sigtermStopsAWorkerAndTheIngressBeforeTheirDeadlines() async throws {
        let port = FleetProcess.freePort()
        let worker = try FleetProcess("payfleet-authorize", environment: [
            "PAYFLEET_HEALTH_PORT": "\(port)", "PAYFLEET_SHUTDOWN_TIMEOUT": "2", "PAYFLEET_LIMIT_SYNC_INTERVAL": "3600",
        ])
        let (ingress, _) = try await Self.ingress()
        try await worker.waitUntilReady(port: port)
        for process in [worker, ingress] {
            let status = await process.terminate(timeout: .seconds(60))
            #expect(status == 0, "\(process.log.suffix(2_000))")
            for sign in ["Cancellation took longer", "CancellationError", "shutdown deadline", "before the outbox was flushed"] {
                #expect(!process.log.contains(sign), "\(sign): \(process.log.suffix(2_000))")
            }
        }
    }

    @Test func everyExecutableHasHelp() async throws {
        for executable in ["payfleet", "payfleet-ingress", "payfleet-authorize", "payfleet-capture", "payfleet-timeout", "payfleet-expire",
                           "payfleet-clock"] {
            let output = try await Self.run(executable, ["--help"])
            #expect(output.contains("USAGE") && output.contains("--amqp-url") || output.contains("SUBCOMMANDS"), "\(executable): \(output)")
        }
        #expect(try await Self.run("payfleet-timeout", ["--help"]).contains("--payment-timeout"))
        #expect(try await Self.run("payfleet-clock", ["--help"]).contains("--timeout-sweep-interval"))
        #expect(try await Self.run("payfleet-capture", ["--help"]).contains("--sandbox"))
        #expect(try await Self.run("payfleet-ingress", ["--help"]).contains("--channel-secret"))
    }

    /// `payfleet schedule list`: each task with its last slots and their states.
    @Test func theScheduleListShowsTheClocksSlots() async throws {
        let pool = try TestEnvironment.postgres(size: 1)
        try await Migrations.apply(to: pool, logger: TestEnvironment.logger)
        let task = TestEnvironment.unique("test.listed")
        try await ScheduledTaskStore(pool: pool).plan(task: task, run: [Date(timeIntervalSince1970: 1_796_083_200)],
                                                      skip: [Date(timeIntervalSince1970: 1_796_079_600)], reason: "missed while no clock ran")
        let listed = try await Self.cli(["schedule", "list", "--last", "2"])
        let lines = listed.split(separator: "\n").filter { $0.hasPrefix(task) }
        #expect(lines.count == 2, "\(listed)")
        #expect(lines.first?.contains("2026-12-01T00:00:00.000Z\tpending") == true && lines.last?.contains("skipped") == true
                && lines.last?.contains("missed while no clock ran") == true, "\(lines)")
        await pool.close()
    }

    static func cli(_ arguments: [String]) async throws -> String { try await run("payfleet", arguments) }

    /// Runs an executable to completion and returns what it printed.
    static func run(_ executable: String, _ arguments: [String]) async throws -> String {
        let process = try FleetProcess(executable, arguments: arguments)
        _ = await eventually(timeout: .seconds(60)) { !process.isRunning }
        return process.log
    }
}
}

/// The ingress when the broker takes a command but cannot route it. The test removes the shared
/// `payment.create` binding for a moment: anything else publishing a payment then (another suite's
/// command, a harness declaring the topology, which puts the binding back) would change its
/// outcome or this test's, so it runs alone, in the chaos phase of `deploy/local/test.sh`.
extension EndToEnd {
@Suite(.serialized, .enabled(if: RabbitMQControl.chaosTestsEnabled, "the chaos phase of deploy/local/test.sh"))
struct IngressBrokerChaosTests {
    @Test func whenTheBrokerDoesNotConfirmNothingIsAccepted() async throws {
        let (ingress, base) = try await IngressAndOperatorTests.ingress()
        defer { ingress.stop() }
        let pool = try TestEnvironment.postgres(size: 1)
        let (merchant, apiKey) = try await Fixtures.merchant(pool)
        let broker = try await TestEnvironment.amqp("unbinder")
        let binding = AMQPBinding(source: "payfleet.commands", destination: "payfleet.authorize", routingKey: "payment.create")
        // Unroutable: the broker returns the mandatory publish instead of confirming a delivery.
        try await broker.unbind(binding)
        let headers = ["Authorization": "Bearer \(apiKey)", "Content-Type": "application/json", "Idempotency-Key": "no-route"]
        let refused: HTTP.Reply
        do {
            refused = try await HTTP.post("\(base)/api/v1/payments", headers: headers, body: IngressAndOperatorTests.body())
        } catch {
            try await broker.bind(binding)
            throw error
        }
        try await broker.bind(binding)
        #expect(refused.status == 503)
        #expect(refused.json["code"] as? String == "broker_unavailable")
        let stored = try await pool.query("SELECT count(*) AS n FROM http_idempotency WHERE merchant_id = $1", [merchant.merchantId])
        #expect(try stored.rows[0].int("n") == 0, "a 503 keeps no idempotency record, so the client may retry")
        // With the route back, the same key is accepted (202 at once: no worker in this test).
        let retried = try await HTTP.post("\(base)/api/v1/payments", headers: headers.merging(["Prefer": "respond-async"]) { a, _ in a },
                                          body: IngressAndOperatorTests.body())
        #expect(retried.status == 202)
        await broker.close()
        await pool.close()
    }
}
}
