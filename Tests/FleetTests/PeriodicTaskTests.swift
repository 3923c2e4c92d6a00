@testable import Fleet
import Foundation
import PayFleetTesting
import Redis
import ServiceLifecycle
import Synchronization
import Testing

/// The one periodic building block and its leader lock, against a real Redis.
@Suite struct PeriodicTaskTests {
    final class Counter: Sendable {
        let value = Mutex(0)
        func bump() -> Int { value.withLock { $0 += 1; return $0 } }
        var count: Int { value.withLock { $0 } }
    }

    @Test func passesRunEveryIntervalAndAtOnceAfterMoreOrAWakeUp() async throws {
        let passes = Counter()
        let task = PeriodicTask(name: "test", interval: .seconds(3600), runAtStart: true, logger: TestEnvironment.logger) { _ in
            passes.bump() < 3 ? .more : .idle
        }
        let running = Task { try await task.run() }
        // Three passes at once (.more twice), then it waits an hour...
        #expect(await eventually(timeout: .seconds(5)) { passes.count == 3 })
        try await Task.sleep(for: .milliseconds(200))
        #expect(passes.count == 3)
        // ...unless woken.
        task.notify()
        #expect(await eventually(timeout: .seconds(5)) { passes.count == 4 })
        running.cancel()
    }

    /// A stopping worker's services stop one after another; a task waiting for its interval must
    /// not hold the others up. Here the interval is an hour: the group's run returns only if the
    /// shutdown ends the wait (the time limit turns a regression into a failure, not an hour's hang).
    @Test(.timeLimit(.minutes(1))) func aGracefulShutdownEndsTheWaitForTheNextPass() async throws {
        let passes = Counter()
        let task = PeriodicTask(name: "test", interval: .seconds(3600), runAtStart: true, logger: TestEnvironment.logger) { _ in
            _ = passes.bump()
            return .idle
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [.init(service: task)], logger: TestEnvironment.logger))
        try await withThrowingTaskGroup(of: Void.self) { running in
            running.addTask { try await group.run() }
            #expect(await eventually(timeout: .seconds(5)) { passes.count == 1 })  // now waiting for its hour
            await group.triggerGracefulShutdown()
            try await running.next()
        }
        #expect(passes.count == 1)
    }

    @Test func aFailingPassBacksOffAndTheLoopGoesOn() async throws {
        let passes = Counter()
        struct Scripted: Error {}
        let task = PeriodicTask(name: "test", interval: .seconds(3600), runAtStart: true, logger: TestEnvironment.logger) { _ in
            if passes.bump() < 3 { throw Scripted() }
            return .idle
        }
        let running = Task { try await task.run() }
        // 100 ms, then 200 ms of backoff: the third pass comes well before the hour.
        #expect(await eventually(timeout: .seconds(5)) { passes.count == 3 })
        running.cancel()
    }

    @Test func onlyTheLeaderRunsAndATakeoverGetsANewFencingToken() async throws {
        let redis = try TestEnvironment.redis()
        let key = TestEnvironment.unique("pf:test:lock")
        let first = LeaderLock(redis: redis, key: key, lease: .seconds(30))
        let second = LeaderLock(redis: redis, key: key, lease: .seconds(30))
        let token = try #require(try await first.acquireOrRenew())
        #expect(try await second.acquireOrRenew() == nil, "held by the first")
        #expect(try await first.acquireOrRenew() == token, "renewal keeps the token")

        // Two tasks on one lock: only the holder's passes run.
        let ran = Counter(), other = Counter()
        let leader = PeriodicTask(name: "a", interval: .seconds(3600), lock: first, logger: TestEnvironment.logger) { context in
            #expect(context.fencingToken == token)
            _ = ran.bump()
            return .idle
        }
        let follower = PeriodicTask(name: "b", interval: .seconds(3600), lock: second, logger: TestEnvironment.logger) { _ in
            _ = other.bump()
            return .idle
        }
        try await leader.once()
        try await follower.once()
        #expect(ran.count == 1 && other.count == 0)

        // The lease lapses (a paused leader): the other takes over with a new token, and the old
        // holder's renewal fails and cannot release the new holder's lease.
        _ = try await redis.command(["PEXPIRE", key, "1"])
        try await Task.sleep(for: .milliseconds(20))
        let newToken = try #require(try await second.acquireOrRenew())
        #expect(newToken != token)
        #expect(first.token == token, "the old holder has not noticed yet")
        #expect(try await first.acquireOrRenew() == nil)
        await first.release()
        #expect(try await redis.command(["GET", key]).string == newToken, "compare-and-delete left the new holder's lease")
        await second.release()
        #expect(try await redis.command(["EXISTS", key]).int == 0)
        await redis.close()
    }
}
