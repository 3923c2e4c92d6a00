import AMQP
import Contract
@testable import Fleet
import Foundation
import PayFleetTesting
import PaymentServices
import Payments
import Postgres
import Store
import Testing
@testable import Workers

/// The clock's lock fences its record; the sandbox channels remember calls like a PSP.
@Suite(.serialized) struct ClockAndChannelTests {
    /// A clock that paused past its lease while running a slot: another clock takes the slot over
    /// and finishes it; the paused one can no longer write it, and the command went out under one key.
    @Test func theLockTokenFencesTheScheduledTasksRow() async throws {
        let pool = try TestEnvironment.postgres(size: 2)
        try await Migrations.apply(to: pool, logger: TestEnvironment.logger)
        let redis = try TestEnvironment.redis()
        let publisher = try await TestEnvironment.amqp("clock test publisher")
        let name = TestEnvironment.unique("test.tick")
        let commands = try await EventSubscriber(exchange: Exchanges.commands, bindingKey: name)
        let task = ScheduledTask(name: name, every: 3_600, catchUp: 1)
        let store = ScheduledTaskStore(pool: pool)
        let key = TestEnvironment.unique("pf:test:clock")
        let lockA = LeaderLock(redis: redis, key: key, lease: .seconds(1)), lockB = LeaderLock(redis: redis, key: key, lease: .seconds(1))
        // The clocks run on a time of their own, half an hour into a slot: on the real one, an hour
        // boundary between A's start and B's pass would make B plan and publish the next slot too.
        let time = ManualTime(Date(timeIntervalSince1970: 1_938_040_200)) // 2031-06-01T00:30:00Z
        func clock(_ lock: LeaderLock) -> Clock {
            Clock(tasks: [task], store: store, lock: lock, publisher: publisher, clock: .manual(time), tick: .seconds(1), logger: TestEnvironment.logger)
        }
        let tokenA = try #require(try await lockA.acquireOrRenew())
        let slot = task.slot(at: time.now)
        try await store.plan(task: name, run: [slot], skip: [], reason: "")
        // A starts the slot, then pauses (a long GC, a frozen VM) past its lease.
        #expect(try await store.start(task: name, slot: slot, token: tokenA, commandId: "a", at: time.now))
        try await Task.sleep(for: .milliseconds(1_300))
        time.advance(by: 1.3)
        let tokenB = try #require(try await lockB.acquireOrRenew(), "the lease lapsed")
        #expect(tokenB != tokenA)
        try await clock(lockB).pass(task, token: tokenB)
        // A wakes up and tries to finish what it started: fenced out.
        #expect(try await !store.finish(task: name, slot: slot, token: tokenA, status: .completed, at: time.now))
        #expect(try await !store.finish(task: name, slot: slot, token: tokenA, status: .failed, error: "late", at: time.now))
        let rows = try await store.recent(limit: 5).filter { $0.task == name }
        #expect(rows.map(\.status) == [.completed] && rows.first?.attempts == 2)
        let published = await commands.wait { !$0.isEmpty }
        #expect(published.count == 1)
        #expect(published.first?.json["idempotencykey"] as? String == task.key(for: slot))
        #expect(published.first?.json["merchantid"] == nil, "a system command")
        // B's next pass finds nothing to do; A, without the lease, runs no pass at all.
        try await clock(lockB).pass(task, token: tokenB)
        try await Task.sleep(for: .milliseconds(300))
        #expect(commands.events.count == 1)
        await commands.close()
        await publisher.close()
        await redis.close()
        await pool.close()
    }

    /// The sandbox behaves like a PSP: each call remembered by its key outside any transaction,
    /// a repeated key gets the first answer, and a call that "got no answer" took effect.
    @Test func theSandboxChannelsRememberEveryCallByItsKey() async throws {
        let pool = try TestEnvironment.postgres(size: 3)
        try await Migrations.apply(to: pool, logger: TestEnvironment.logger)
        let channels = SandboxChannels(pool: pool)
        let resource = TestEnvironment.unique("pay_test")
        func charge(_ amount: Int64, key: String) -> ChannelRequest {
            ChannelRequest(channel: "stripe", operation: .authorize, idempotencyKey: key, amount: amount, currency: .USD, resource: resource)
        }
        let key = ChannelKeys.authorize(resource)
        #expect(try await channels.call(charge(5_000, key: key)) == .succeeded(reference: "sbx_stripe_\(resource)"))
        // The same key with another amount is the same call: its first answer, nothing new.
        #expect(try await channels.call(charge(5_051, key: key)) == .succeeded(reference: "sbx_stripe_\(resource)"))
        #expect(try await channels.calls(channel: "stripe", idempotencyKey: key) == 2)
        #expect(try await channels.calls(channel: "paypal", idempotencyKey: key) == 0, "another channel is another PSP")

        // 54: no answer, yet it went through; asked, the channel says so.
        let silent = key + ":54"
        #expect(try await channels.call(charge(7_054, key: silent)) == .noAnswer)
        #expect(try await channels.status(channel: "stripe", idempotencyKey: silent) == .succeeded(reference: "sbx_stripe_\(resource)"))
        #expect(try await channels.call(charge(7_054, key: silent)) == .succeeded(reference: "sbx_stripe_\(resource)"))
        #expect(try await channels.status(channel: "stripe", idempotencyKey: key + ":never") == .unknown)
        #expect(try await channels.call(charge(7_052, key: key + ":52")) == .pending(reference: "sbx_stripe_\(resource)"))
        #expect(try await channels.status(channel: "stripe", idempotencyKey: key + ":52") == .pending)

        // A call made inside a transaction that rolls back is still remembered: the PSP's database
        // is not ours.
        struct Rollback: Error {}
        await #expect(throws: Rollback.self) {
            try await pool.transaction { _ in
                _ = try await channels.call(charge(6_000, key: key + ":rolled-back"))
                throw Rollback()
            }
        }
        #expect(try await channels.calls(channel: "stripe", idempotencyKey: key + ":rolled-back") == 1)
        await pool.close()
    }
}
