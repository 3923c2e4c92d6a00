import Foundation
import PayFleetTesting
import Payments
import Store
import Testing

/// The live channel outcomes and the circuit breaker, against real Redis.
@Suite struct ChannelStatsTests {
    @Test func theWindowCountsOutcomesAndOpensTheCircuitBelowHalfOverTwenty() async throws {
        let redis = try TestEnvironment.redis()
        let store = ChannelStatsStore(redis: redis)
        let channel = TestEnvironment.unique("chan").replacingOccurrences(of: "-", with: "_")
        let now = Date()
        for _ in 0..<10 { try await store.record(channel, success: true, at: now) }
        for _ in 0..<9 { try await store.record(channel, success: false, at: now) }
        var snapshot = try await store.snapshot([channel], at: now)
        #expect(snapshot.stats[channel] == ChannelStats(attempts: 19, successes: 10))
        #expect(snapshot.open.isEmpty, "fewer than 20 attempts never open the circuit")
        try await store.record(channel, success: false, at: now)
        snapshot = try await store.snapshot([channel], at: now)
        #expect(snapshot.open.isEmpty, "10 of 20 is 50%: not below")
        try await store.record(channel, success: false, at: now)
        snapshot = try await store.snapshot([channel], at: now)
        #expect(snapshot.open == [channel], "10 of 21 is below 50%")
        // Outside the window the old outcomes no longer count.
        #expect(try await store.snapshot([channel], at: now.addingTimeInterval(120)).stats[channel] == ChannelStats(attempts: 0, successes: 0))
        try await store.reset(channel, at: now)
        #expect(try await store.snapshot([channel], at: now).open.isEmpty)
        await redis.close()
    }
}
