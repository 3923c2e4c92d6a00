import AMQP
import Contract
import Foundation
import PayFleetTesting
import Payments
import Postgres
import Redis
import Store
import Testing

/// The real executables (`payfleet-ingress`, `payfleet-authorize`) against the real servers.
/// Serialized: each test runs its own worker on the shared `payfleet.authorize` queue.
extension EndToEnd {
@Suite(.serialized) struct AuthorizeEndToEndTests {
    static let adminToken = "test-admin-token-0123456789"

    static func startWorker() async throws -> FleetProcess {
        let port = FleetProcess.freePort()
        let worker = try FleetProcess("payfleet-authorize", environment: ["PAYFLEET_HEALTH_PORT": "\(port)"])
        try await worker.waitUntilReady(port: port)
        return worker
    }

    static func startIngress() async throws -> (FleetProcess, String) {
        let port = FleetProcess.freePort()
        let ingress = try FleetProcess("payfleet-ingress", environment: ["PAYFLEET_HTTP_PORT": "\(port)",
                                                                        "PAYFLEET_ADMIN_TOKEN": adminToken])
        try await ingress.waitUntilReady(port: port)
        return (ingress, "http://127.0.0.1:\(port)")
    }

    static func json(_ object: Any) -> Data { try! JSONSerialization.data(withJSONObject: object) }

    /// After a crash test: every command has exactly one outcome event id (re-deliveries repeat
    /// the same id), exactly one payment (none doubled, none lost), the declines (amounts ending
    /// in 51) failed, and the limit counters equal the sum of the succeeded amounts (declines were
    /// released). Returns that sum and the counter.
    static func expectExactlyOnce(_ commands: [CloudEvent<PaymentRequest>], outcomes: [EventSubscriber.Received], merchantId: String,
                                  pool: PostgresPool, redis: RedisClient) async throws -> (succeededSum: Int64, counter: Int64) {
        let total = commands.count
        let byCommand = Dictionary(grouping: outcomes, by: { $0.correlationId ?? "" })
        #expect(Set(commands.map(\.id)).isSubset(of: Set(byCommand.keys)))
        #expect(byCommand.values.allSatisfy { Set($0.map(\.eventId)).count == 1 }, "a command got two different outcomes")

        let rows = try await pool.query("""
            SELECT count(*) AS n, count(DISTINCT command_id) AS commands,
                   coalesce(sum(amount) FILTER (WHERE status = 'succeeded'), 0) AS succeeded_sum,
                   count(*) FILTER (WHERE status = 'failed') AS failed
            FROM payments WHERE merchant_id = $1
            """, [merchantId]).rows[0]
        #expect(try rows.int("n") == total)
        #expect(try rows.int("commands") == total)
        #expect(try rows.int("failed") == commands.filter { $0.data.amount % 100 == 51 }.count)

        let usage = try await LimitLedger(redis: redis).usage(merchantId: merchantId, windows: LimitWindows(at: Date()))
        let succeededSum = try rows.int64("succeeded_sum")
        #expect(usage.month == succeededSum)
        #expect(succeededSum == commands.filter { $0.data.amount % 100 != 51 }.map(\.data.amount).reduce(0, +))
        return (succeededSum, usage.month)
    }

    @Test func anHTTPPaymentGivesAnOutcomeAndAnEvent() async throws {
        try await Fixtures.resetChannelStats()
        let worker = try await Self.startWorker()
        let (ingress, base) = try await Self.startIngress()
        defer { ingress.stop(); worker.stop() }

        // The admin creates a merchant; its API key is shown once.
        let unauthorized = try await HTTP.post("\(base)/api/v1/admin/merchants", headers: ["Content-Type": "application/json"],
                                               body: Self.json(["name": "x", "country": "US"]))
        #expect(unauthorized.status == 401)
        let forbidden = try await HTTP.post("\(base)/api/v1/admin/merchants",
                                            headers: ["Content-Type": "application/json", "Authorization": "Bearer wrong-token"],
                                            body: Self.json(["name": "x", "country": "US"]))
        #expect(forbidden.status == 403)
        let created = try await HTTP.post("\(base)/api/v1/admin/merchants",
                                          headers: ["Content-Type": "application/json", "Authorization": "Bearer \(Self.adminToken)"],
                                          body: Self.json(["name": "Demo Shop", "tier": "business", "base_currency": "USD", "country": "US"]))
        #expect(created.status == 201)
        let merchant = try #require(created.json["merchant"] as? [String: Any])
        let merchantId = try #require(merchant["merchant_id"] as? String)
        let apiKey = try #require(created.json["api_key"] as? String)
        #expect(merchant["tier"] as? String == "business")

        let events = try await EventSubscriber.outcomes(of: merchantId)
        let auth = ["Authorization": "Bearer \(apiKey)", "Content-Type": "application/json"]
        let payment: [String: Any] = ["order_no": "order-1001", "amount": 50_000, "currency": "USD", "country": "US", "pay_method": "card"]

        let first = try await HTTP.post("\(base)/api/v1/payments", headers: auth.merging(["Idempotency-Key": "k1"]) { a, _ in a },
                                        body: Self.json(payment))
        #expect(first.status == 201, "\(first.text)")
        #expect(first.json["status"] as? String == "succeeded")
        #expect(first.json["channel"] as? String == "stripe")
        #expect(first.json["channel_fee"] as? Int == 1_480)
        #expect(first.json["version"] as? Int == 1)
        let paymentNo = try #require(first.json["payment_no"] as? String)
        #expect((first.json["routing"] as? [String: Any])?["strategy"] as? String == "geographic")

        let event = try #require(await events.wait { $0.contains { $0.type == "payment.succeeded" } }.first)
        #expect(event.routingKey == "m.\(merchantId).payment.succeeded")
        #expect(event.data["payment_no"] as? String == paymentNo)
        #expect(event.json["specversion"] as? String == "1.0")

        let fetched = try await HTTP.get("\(base)/api/v1/payments/\(paymentNo)", headers: auth)
        #expect(fetched.status == 200)
        #expect(fetched.json["status"] as? String == "succeeded")

        // Idempotency-Key: replay, reuse with another payload, missing.
        let replay = try await HTTP.post("\(base)/api/v1/payments", headers: auth.merging(["Idempotency-Key": "k1"]) { a, _ in a },
                                         body: Self.json(payment))
        #expect(replay.status == 201)
        #expect(replay.header("Idempotent-Replayed") == "true")
        #expect(replay.json["payment_no"] as? String == paymentNo)
        var other = payment
        other["amount"] = 7
        let reused = try await HTTP.post("\(base)/api/v1/payments", headers: auth.merging(["Idempotency-Key": "k1"]) { a, _ in a },
                                         body: Self.json(other))
        #expect(reused.status == 422)
        #expect(reused.json["code"] as? String == "idempotency_key_reused")
        let missing = try await HTTP.post("\(base)/api/v1/payments", headers: auth, body: Self.json(payment))
        #expect(missing.status == 400)
        #expect(missing.header("Content-Type")?.hasPrefix("application/problem+json") == true)

        // Bad input: each with a clear, specific error.
        func post(_ body: Data, key: String, contentType: String = "application/json") async throws -> HTTP.Reply {
            try await HTTP.post("\(base)/api/v1/payments",
                                headers: ["Authorization": "Bearer \(apiKey)", "Content-Type": contentType, "Idempotency-Key": key],
                                body: body)
        }
        #expect(try await post(Data("amount=5".utf8), key: "form", contentType: "application/x-www-form-urlencoded").status == 415)
        #expect(try await post(Data(repeating: 0x20, count: 70_000), key: "huge").status == 413)
        let malformed = try await post(Data("{\"order_no\": ".utf8), key: "malformed")
        #expect(malformed.status == 400)
        #expect(malformed.json["code"] as? String == "invalid_request")
        var zero = payment
        zero["amount"] = 0
        zero["currency"] = "XXX"
        let invalid = try await post(Self.json(zero), key: "zero")
        #expect(invalid.status == 400)
        let fields = (invalid.json["errors"] as? [[String: Any]])?.compactMap { $0["field"] as? String } ?? []
        #expect(Set(fields) == ["amount", "currency"])

        // Declined by the channel: 402 with the failed payment.
        var declined = payment
        declined["order_no"] = "order-declined"   // order-1001 is paid: a new payment for it would be order_already_paid
        declined["amount"] = 5_051
        let refused = try await post(Self.json(declined), key: "declined")
        #expect(refused.status == 402)
        #expect(refused.json["code"] as? String == "channel_declined")
        #expect((refused.json["payment"] as? [String: Any])?["status"] as? String == "failed")

        // Over the business tier's single limit (50,000.00 USD = 5,000,000 cents): 402 limit_exceeded.
        var big = payment
        big["order_no"] = "order-big"
        big["amount"] = 5_000_001
        let tooBig = try await post(Self.json(big), key: "too-big")
        #expect(tooBig.status == 402)
        #expect(tooBig.json["code"] as? String == "limit_exceeded")

        // Prefer: respond-async answers 202 at once, with Location; the outcome follows.
        var later = payment
        later["order_no"] = "order-async"
        let accepted = try await HTTP.post("\(base)/api/v1/payments",
                                           headers: auth.merging(["Idempotency-Key": "async", "Prefer": "respond-async"]) { a, _ in a },
                                           body: Self.json(later))
        #expect(accepted.status == 202)
        #expect(accepted.json["status"] as? String == "processing")
        let location = try #require(accepted.header("Location"))
        #expect(await eventually { (try? await HTTP.get("\(base)\(location)", headers: auth).json["status"] as? String) == "succeeded" })

        // Another merchant cannot see it.
        let stranger = try await HTTP.post("\(base)/api/v1/admin/merchants",
                                           headers: ["Content-Type": "application/json", "Authorization": "Bearer \(Self.adminToken)"],
                                           body: Self.json(["name": "Other", "country": "US"]))
        let strangerKey = try #require(stranger.json["api_key"] as? String)
        #expect(try await HTTP.get("\(base)/api/v1/payments/\(paymentNo)", headers: ["Authorization": "Bearer \(strangerKey)"]).status == 404)

        await events.close()
        // SIGTERM: a clean, prompt exit.
        #expect(await worker.terminate() == 0)
        #expect(await ingress.terminate() == 0)
    }

    @Test func aDuplicateAMQPCommandGivesOnePayment() async throws {
        let worker = try await Self.startWorker()
        defer { worker.stop() }
        let pool = try TestEnvironment.postgres(size: 2)
        let merchant = try await Fixtures.merchant(pool).merchant
        let events = try await EventSubscriber.outcomes(of: merchant.merchantId)
        let broker = try await TestEnvironment.amqp("upstream")
        let command = Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: 1_234, idempotencyKey: "order-42-attempt-1")
        let message = try Fixtures.message(command)
        try await Fixtures.publishAll([message, message], on: broker)
        // The same key under a new command id: the same payment, not a second one. Sent once the
        // first command took effect: sent together, either may claim the key first.
        _ = await events.wait { !$0.isEmpty }
        var again = command
        again.id = MessageIds.newCommandId()
        try await Fixtures.publishAll([try Fixtures.message(again)], on: broker)

        let received = await events.wait { $0.count >= 3 }
        #expect(received.count == 3)
        #expect(Set(received.map(\.eventId)) == [MessageIds.eventId(merchantId: merchant.merchantId, commandId: command.id, type: "payment.succeeded")])
        let count = try await pool.query("SELECT count(*) AS n FROM payments WHERE merchant_id = $1", [merchant.merchantId])
        #expect(try count.rows[0].int("n") == 1)
        await events.close()
        await broker.close()
        await pool.close()
    }

    @Test func killNineInTheMiddleOfTwoThousandCommands() async throws {
        let total = 2_000
        let pool = try TestEnvironment.postgres(size: 2)
        let redis = try TestEnvironment.redis()
        let merchant = try await Fixtures.unlimitedMerchant(pool)
        let events = try await EventSubscriber.outcomes(of: merchant.merchantId)
        let broker = try await TestEnvironment.amqp("upstream")
        let commands = (0..<total).map {
            Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: Fixtures.settlingAmount(Int64(1_000 + $0 * 7)))
        }
        // The whole backlog is queued first; the worker dies (`_exit(137)`: no cleanup, no ack, no
        // flush, as `kill -9`) right after its 200th commit, before that command's events go out
        // or its delivery is acked, with the next commands in flight (20 ms channel calls). A
        // fault point, not a timed kill from outside: on a fast machine a timed kill landed after
        // all 2,000 were done, whatever the pacing, while the loaded test process was not polling.
        try await Fixtures.publishAll(try commands.map { try Fixtures.message($0) }, on: broker)
        let worker = try FleetProcess("payfleet-authorize", environment: FleetProcess.crashing(afterCommit: 200).compactMapValues { $0 }
            .merging(["PAYFLEET_HEALTH_PORT": "\(FleetProcess.freePort())", "PAYFLEET_SANDBOX_LATENCY_MS": "20"]) { $1 })
        defer { worker.stop() }
        #expect(await worker.waitForExit(timeout: .seconds(120)) == 137, "the worker must crash at its 200th commit")
        #expect(worker.log.contains("crashing at after-commit"))
        let doneAtKill = try await Fixtures.paymentCount(pool, merchant.merchantId)
        #expect(doneAtKill >= 200 && doneAtKill < total, "the crash must land mid-flight (\(doneAtKill) of \(total) done)")
        try worker.restart(environment: FleetProcess.unfaulted)

        let outcomes = await events.wait(timeout: .seconds(180)) { Set($0.compactMap(\.correlationId)).count >= total }
        await worker.terminate()

        let (succeededSum, counter) = try await Self.expectExactlyOnce(commands, outcomes: outcomes, merchantId: merchant.merchantId,
                                                                       pool: pool, redis: redis)

        print("kill -9 test: killed at \(doneAtKill)/\(total) payments; \(outcomes.count) outcome deliveries for \(total) commands " +
              "(\(outcomes.count - total) re-emitted duplicates); limit counter \(counter) = succeeded sum \(succeededSum)")
        await events.close()
        await broker.close()
        await redis.close()
        await pool.close()
    }

    @Test func transientChannelErrorsAreRetriedThenFailAndPendingKeepsItsReservation() async throws {
        // One retry (through payfleet.retry.1s), so the final attempt comes a second later.
        let port = FleetProcess.freePort()
        let worker = try FleetProcess("payfleet-authorize", environment: ["PAYFLEET_HEALTH_PORT": "\(port)", "PAYFLEET_MAX_RETRIES": "1"])
        defer { worker.stop() }
        try await worker.waitUntilReady(port: port)
        let pool = try TestEnvironment.postgres(size: 1)
        let redis = try TestEnvironment.redis()
        let merchant = try await Fixtures.unlimitedMerchant(pool)
        let events = try await EventSubscriber.outcomes(of: merchant.merchantId)
        let broker = try await TestEnvironment.amqp("upstream")
        let transient = Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: 7_053)
        let pending = Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: 7_052)
        try await Fixtures.publishAll([try Fixtures.message(transient), try Fixtures.message(pending)], on: broker)

        let received = await events.wait(timeout: .seconds(30)) { $0.count >= 2 }
        let failed = try #require(received.first { $0.correlationId == transient.id })
        #expect(failed.type == "payment.failed")
        #expect(failed.data["failure_code"] as? String == "channel_error")
        let waiting = try #require(received.first { $0.correlationId == pending.id })
        #expect(waiting.type == "payment.pending")
        // The failed payment gave its reservation back; the pending one keeps it.
        let usage = try await LimitLedger(redis: redis).usage(merchantId: merchant.merchantId, windows: LimitWindows(at: Date()))
        #expect(usage.day == 7_052)
        #expect(worker.log.contains("payfleet-authorize") && !worker.log.contains("parking message"))
        await events.close()
        await broker.close()
        await redis.close()
        await pool.close()
    }

    @Test func threeWorkersNeverPushAWindowPastItsLimit() async throws {
        let pool = try TestEnvironment.postgres(size: 2)
        let redis = try TestEnvironment.redis()
        // Room for exactly 100 payments of 1,000 today.
        let merchant = try await Fixtures.merchant(pool, overrides: LimitOverrides(singleLimit: 1_000, dailyLimit: 100_000,
                                                                                   monthlyLimit: 10_000_000)).merchant
        let events = try await EventSubscriber.outcomes(of: merchant.merchantId)
        let workers = try await withThrowingTaskGroup(of: FleetProcess.self) { group in
            for _ in 0..<3 { group.addTask { try await Self.startWorker() } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let broker = try await TestEnvironment.amqp("upstream")
        try await Fixtures.publishAll(try (0..<300).map {
            try Fixtures.message(Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: 1_000, orderNo: "race-\($0)"))
        }, on: broker)
        // Delivery is at least once: count distinct events.
        let received = EventSubscriber.distinct(await events.wait(timeout: .seconds(120)) { EventSubscriber.distinct($0).count >= 300 })
        for worker in workers { await worker.terminate() }

        #expect(received.filter { $0.type == "payment.succeeded" }.count == 100)
        #expect(received.filter { $0.type == "payment.failed" }.count == 200)
        #expect(received.filter { $0.type == "payment.failed" }.allSatisfy { $0.data["failure_code"] as? String == "limit_exceeded" })
        let usage = try await LimitLedger(redis: redis).usage(merchantId: merchant.merchantId, windows: LimitWindows(at: Date()))
        #expect(usage.day == 100_000)
        let logs = workers.map(\.log)
        #expect(logs.filter { $0.contains("consuming") }.count == 3, "all three workers took part")
        await events.close()
        await broker.close()
        await redis.close()
        await pool.close()
    }

}
}
