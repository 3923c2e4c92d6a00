import AMQP
import Contract
import Foundation
import PayFleetTesting
import Payments
import Postgres
import Redis
import Store
import Testing

/// Group commit (`GroupCommitter`) with the real `payfleet-authorize` against the real servers:
/// a crash inside a group's transaction, and groups of two workers over the same merchants.
extension EndToEnd {
@Suite(.serialized) struct GroupCommitEndToEndTests {
    /// Groups of up to 16, two running at once, and a group waits 5 ms for company: with a backlog
    /// every group has several members (the metrics below prove it), so these tests never pass
    /// with grouping off (the default).
    static let grouping = ["PAYFLEET_GROUP_COMMIT": "16", "PAYFLEET_GROUP_COMMIT_WAIT_MS": "5", "PAYFLEET_GROUP_COMMIT_RUNNERS": "2"]

    static func startWorker(_ extra: [String: String] = [:]) async throws -> (FleetProcess, port: Int) {
        let port = FleetProcess.freePort()
        let worker = try FleetProcess("payfleet-authorize", environment: grouping.merging(extra) { $1 }
                                        .merging(["PAYFLEET_HEALTH_PORT": "\(port)"]) { $1 })
        try await worker.waitUntilReady(port: port)
        return (worker, port)
    }

    /// The worker's group commit counters: groups committed and commands in them.
    static func groupCounts(port: Int) async throws -> (groups: Int, members: Int) {
        let text = try await HTTP.get("http://127.0.0.1:\(port)/metrics").text
        func value(_ name: String) -> Int {
            text.split(separator: "\n").filter { $0.hasPrefix(name + "{") }
                .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0) { $0 + Int($1) }
        }
        return (value("payfleet_group_commits_total"), value("payfleet_group_commit_members_total"))
    }

    @Test func killNineInTheMiddleOfAGroupCommitWithFiveThousandInFlight() async throws {
        let total = 5_000
        let pool = try TestEnvironment.postgres(size: 2)
        let redis = try TestEnvironment.redis()
        let merchant = try await Fixtures.unlimitedMerchant(pool)
        let events = try await EventSubscriber.outcomes(of: merchant.merchantId)
        let broker = try await TestEnvironment.amqp("upstream")
        let commands = (0..<total).map {
            Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: Fixtures.settlingAmount(Int64(1_000 + $0 * 7)))
        }
        try await Fixtures.publishAll(try commands.map { try Fixtures.message($0) }, on: broker)

        // 1. The worker dies inside a group's transaction, after two or more members wrote their
        //    effects and before COMMIT (the fault point is reached only then), with the whole
        //    backlog queued and a prefetch of deliveries unacked.
        let once = FileManager.default.temporaryDirectory.appendingPathComponent("gc-fault-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: once) }
        // Not waited on for readiness: it may crash before its first readiness probe.
        let worker = try FleetProcess("payfleet-authorize", environment: Self.grouping.merging([
            "PAYFLEET_HEALTH_PORT": "\(FleetProcess.freePort())", "PAYFLEET_FAULT_CRASH_AT": "group-commit-before-commit",
            "PAYFLEET_FAULT_ONCE": once]) { $1 })
        let status = await worker.waitForExit(timeout: .seconds(60))
        #expect(status == 137, "the worker must crash at the fault point")
        #expect(worker.log.contains("crashing at group-commit-before-commit"))
        let doneAtCrash = try await Fixtures.paymentCount(pool, merchant.merchantId)

        // 2. Restarted, then dead again (`_exit(137)`, as `kill -9`) right after its 2,000th
        //    commit, in the middle of the drain with groups in flight. A fault point, not a timed
        //    kill from outside: a loaded test process polling for "halfway" could see it only
        //    after the end.
        try worker.restart(environment: FleetProcess.crashing(afterCommit: 2_000))
        #expect(await worker.waitForExit(timeout: .seconds(120)) == 137, "the worker must crash at its 2,000th commit")
        let doneAtKill = try await Fixtures.paymentCount(pool, merchant.merchantId)
        #expect(doneAtKill >= 2_000 && doneAtKill < total, "the crash must land mid-flight (\(doneAtKill) of \(total) done)")
        try worker.restart(environment: FleetProcess.unfaulted)

        let outcomes = await events.wait(timeout: .seconds(300)) { Set($0.compactMap(\.correlationId)).count >= total }
        await worker.terminate()

        let (succeededSum, counter) = try await AuthorizeEndToEndTests.expectExactlyOnce(
            commands, outcomes: outcomes, merchantId: merchant.merchantId, pool: pool, redis: redis)
        let inbox = try await pool.query("SELECT count(*) AS n FROM inbox WHERE merchant_id = $1", [merchant.merchantId]).rows[0]
        #expect(try inbox.int("n") == total)

        print("group commit kill test: crashed inside a group at \(doneAtCrash), killed at \(doneAtKill) of \(total) payments; " +
              "\(outcomes.count) outcome deliveries; limit counter \(counter) = succeeded sum \(succeededSum)")
        await events.close()
        await broker.close()
        await redis.close()
        await pool.close()
    }

    /// Two grouping workers over four merchants, each with room for exactly 40 payments today.
    /// Halfway, Redis loses the merchants' counters: rebuilds take each merchant's limit lock
    /// exclusive while groups hold it shared on several merchants at once, which deadlocks
    /// unless every group takes its locks in one order.
    @Test func twoGroupingWorkersOverOverlappingMerchantsKeepEveryLimitExact() async throws {
        let pool = try TestEnvironment.postgres(size: 2)
        let redis = try TestEnvironment.redis()
        var merchants: [Merchant] = []
        for _ in 0..<4 {
            merchants.append(try await Fixtures.merchant(pool, overrides: LimitOverrides(singleLimit: 1_000, dailyLimit: 40_000,
                                                                                         monthlyLimit: 10_000_000)).merchant)
        }
        var subscribers: [EventSubscriber] = []
        for merchant in merchants { subscribers.append(try await EventSubscriber.outcomes(of: merchant.merchantId)) }
        let (first, firstPort) = try await Self.startWorker()
        let (second, secondPort) = try await Self.startWorker()
        let broker = try await TestEnvironment.amqp("upstream")
        // Interleaved: consecutive commands belong to different merchants, so every group spans several.
        let commands = (0..<480).map { index in
            Fixtures.paymentCommand(merchantId: merchants[index % 4].merchantId, amount: 1_000, orderNo: "overlap-\(index)")
        }
        try await Fixtures.publishAll(try commands[..<240].map { try Fixtures.message($0) }, on: broker)
        _ = try await eventually(timeout: .seconds(60), every: .milliseconds(20)) {
            var done = 0
            for merchant in merchants { done += try await Fixtures.paymentCount(pool, merchant.merchantId) }
            return done >= 60
        }
        for merchant in merchants {
            let keys = try await redis.command(["KEYS", "pf:lim:{\(merchant.merchantId)}:*"]).array?.compactMap(\.string) ?? []
            if !keys.isEmpty { _ = try await redis.command(["DEL"] + keys) }
        }
        try await Fixtures.publishAll(try commands[240...].map { try Fixtures.message($0) }, on: broker)

        var received: [[EventSubscriber.Received]] = []
        for subscriber in subscribers {
            received.append(EventSubscriber.distinct(await subscriber.wait(timeout: .seconds(120)) { EventSubscriber.distinct($0).count >= 120 }))
        }
        let counts = [try await Self.groupCounts(port: firstPort), try await Self.groupCounts(port: secondPort)]
        await first.terminate()
        await second.terminate()

        for (merchant, events) in zip(merchants, received) {
            #expect(events.count == 120)
            #expect(events.filter { $0.type == "payment.succeeded" }.count == 40, "merchant \(merchant.merchantId)")
            #expect(events.filter { $0.type == "payment.failed" }.allSatisfy { $0.data["failure_code"] as? String == "limit_exceeded" })
            let usage = try await LimitLedger(redis: redis).usage(merchantId: merchant.merchantId, windows: LimitWindows(at: Date()))
            #expect(usage.day == 40_000, "merchant \(merchant.merchantId)")
        }
        // Both took part, in groups of more than one command on average, and no group deadlocked.
        #expect(counts.allSatisfy { $0.groups > 0 && $0.members > $0.groups }, "groups formed: \(counts)")
        for worker in [first, second] {
            #expect(!worker.log.contains("deadlock"))
            #expect(!worker.log.contains("failed as a whole"))
        }
        print("overlapping group commits: (groups, commands) per worker \(counts)")
        for subscriber in subscribers { await subscriber.close() }
        await broker.close()
        await redis.close()
        await pool.close()
    }
}
}
