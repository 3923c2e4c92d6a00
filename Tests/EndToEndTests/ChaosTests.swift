import Foundation
import PayFleetTesting
import Payments
import Postgres
import Redis
import Store
import Testing

/// Failures of a server under a running fleet. These restart RabbitMQ, so they run alone:
/// `deploy/local/test.sh` runs them in its chaos phase (PAYFLEET_CHAOS_TESTS=1), after the main run.
@Suite(.serialized, .enabled(if: RabbitMQControl.chaosTestsEnabled, "the chaos phase of deploy/local/test.sh"))
struct ChaosTests {
    /// Redis loses everything (`FLUSHALL`) while two workers race a merchant's daily limit: the
    /// counters are rebuilt from PostgreSQL before the next check and the limit holds exactly.
    @Test func limitsHoldExactlyWhenRedisIsFlushedMidRun() async throws {
        let pool = try TestEnvironment.postgres(size: 2)
        let redis = try TestEnvironment.redis()
        // Room for exactly 400 payments of 1,000 today.
        let merchant = try await Fixtures.merchant(pool, overrides: LimitOverrides(singleLimit: 1_000, dailyLimit: 400_000,
                                                                                   monthlyLimit: 100_000_000)).merchant
        let events = try await EventSubscriber.outcomes(of: merchant.merchantId)
        let workers = [try await EndToEnd.AuthorizeEndToEndTests.startWorker(), try await EndToEnd.AuthorizeEndToEndTests.startWorker()]
        defer { for worker in workers { worker.stop() } }
        let broker = try await TestEnvironment.amqp("upstream")
        try await Fixtures.publishAll(try (0..<1_000).map {
            try Fixtures.message(Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: 1_000, orderNo: "flush-\($0)"))
        }, on: broker)
        await broker.close()

        let before = await events.wait(timeout: .seconds(60)) { $0.count >= 150 }
        _ = try await redis.command(["FLUSHALL"])
        let succeededBefore = before.filter { $0.type == "payment.succeeded" }.count
        #expect(succeededBefore < 400 && before.count < 1_000, "the flush must land mid-run")

        let received = await events.wait(timeout: .seconds(180)) { Set($0.map(\.eventId)).count >= 1_000 }
        var outcomes: [String: String] = [:]
        for event in received { outcomes[event.eventId] = event.type }
        #expect(outcomes.count == 1_000)
        #expect(outcomes.values.filter { $0 == "payment.succeeded" }.count == 400)
        #expect(received.filter { $0.type == "payment.failed" }.allSatisfy { $0.data["failure_code"] as? String == "limit_exceeded" })
        let windows = LimitWindows(at: Date())
        let usage = try await LimitLedger(redis: redis).usage(merchantId: merchant.merchantId, windows: windows)
        #expect(usage.day == 400_000)
        let recorded = try await pool.withConnection {
            try await LimitRecord.recorded(merchantId: merchant.merchantId, windows: windows, on: $0)
        }
        #expect(recorded.day == 400_000)
        #expect(workers.contains { $0.log.contains("rebuilt limit counters") }, "a worker rebuilt them")
        await events.close()
        await redis.close()
        await pool.close()
    }

    @Test func theFleetRidesOutABrokerRestartMidFlight() async throws {
        let total = 3_000
        let pool = try TestEnvironment.postgres(size: 2)
        let redis = try TestEnvironment.redis()
        let merchant = try await Fixtures.unlimitedMerchant(pool)
        let healthPort = FleetProcess.freePort()
        let worker = try FleetProcess("payfleet-authorize", environment: ["PAYFLEET_HEALTH_PORT": "\(healthPort)"])
        try await worker.waitUntilReady(port: healthPort)
        let httpPort = FleetProcess.freePort()
        let ingress = try FleetProcess("payfleet-ingress", environment: ["PAYFLEET_HTTP_PORT": "\(httpPort)",
                                                                        "PAYFLEET_ADMIN_TOKEN": "chaos-admin-token-0123456789"])
        try await ingress.waitUntilReady(port: httpPort)
        let (workerPid, ingressPid) = (worker.pid, ingress.pid)

        let broker = try await TestEnvironment.amqp("upstream")
        let commands = (0..<total).map {
            Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: Fixtures.settlingAmount(Int64(2_000 + $0 % 1_000)))
        }
        try await Fixtures.publishAll(try commands.map { try Fixtures.message($0) }, on: broker)
        await broker.close()
        _ = try await eventually(timeout: .seconds(60), every: .milliseconds(10)) { try await Fixtures.paymentCount(pool, merchant.merchantId) >= 100 }

        try RabbitMQControl.run(["stop_app"])
        let doneWhileDown = try await Fixtures.paymentCount(pool, merchant.merchantId)
        try RabbitMQControl.run(["start_app"])
        #expect(doneWhileDown < total, "the restart must land mid-flight")

        // Every command ends with exactly one payment; every event leaves the outbox.
        let completed = try await eventually(timeout: .seconds(180)) { try await Fixtures.paymentCount(pool, merchant.merchantId) == total }
        #expect(completed)
        #expect(try await eventually(timeout: .seconds(60)) {
            try await pool.query("SELECT count(*) AS n FROM outbox WHERE routing_key LIKE $1", ["m.\(merchant.merchantId).%"])
                .rows[0].int("n") == 0
        })
        let distinct = try await pool.query("SELECT count(DISTINCT command_id) AS n FROM payments WHERE merchant_id = $1",
                                            [merchant.merchantId])
        #expect(try distinct.rows[0].int("n") == total)
        let succeeded = try await pool.query("""
            SELECT coalesce(sum(amount), 0) AS s FROM payments WHERE merchant_id = $1 AND status = 'succeeded'
            """, [merchant.merchantId]).rows[0].int64("s")
        let usage = try await LimitLedger(redis: redis).usage(merchantId: merchant.merchantId, windows: LimitWindows(at: Date()))
        #expect(usage.month == succeeded)

        // The same processes reconnected by themselves, and the ingress takes payments again.
        #expect(worker.isRunning && worker.pid == workerPid)
        #expect(ingress.isRunning && ingress.pid == ingressPid)
        let apiKey = try await Fixtures.merchant(pool).apiKey
        let paid = await eventually(timeout: .seconds(60), every: .milliseconds(500)) {
            let reply = try? await HTTP.post("http://127.0.0.1:\(httpPort)/api/v1/payments",
                                             headers: ["Authorization": "Bearer \(apiKey)", "Content-Type": "application/json",
                                                       "Idempotency-Key": UUID().uuidString],
                                             body: Data(#"{"order_no":"after-restart","amount":700,"currency":"USD","country":"US","pay_method":"card"}"#.utf8))
            return reply?.status == 201
        }
        #expect(paid)
        if completed && usage.month == succeeded {
            print("chaos: broker restarted with \(doneWhileDown)/\(total) done; all \(total) completed once, outbox drained")
        }
        await ingress.terminate()
        await worker.terminate()
        await redis.close()
        await pool.close()
    }

}
