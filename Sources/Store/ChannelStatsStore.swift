import Foundation
import Payments
import Redis

/// Live outcomes per channel in Redis, shared by every authorize replica (RULES "Routing"): a
/// sliding window of 10-second buckets, and the circuit breaker — a channel below 50% over at
/// least 20 attempts in the window is skipped for 60 s, then tried again.
///
/// Outcomes are metrics, not money: an outcome recorded by an attempt that later rolled back and
/// was retried counts twice. That skews a rate slightly and never a balance.
public struct ChannelStatsStore: Sendable {
    public let redis: RedisClient
    /// The window: this many buckets of `bucketSeconds`.
    public var buckets = 6
    public var bucketSeconds = 10

    public init(redis: RedisClient) { self.redis = redis }

    static func bucketKey(_ channel: String, _ bucket: Int) -> String { "pf:route:{\(channel)}:b:\(bucket)" }
    static func openKey(_ channel: String) -> String { "pf:route:{\(channel)}:open" }

    static let recordScript = RedisScript("""
        -- KEYS: the current bucket, the circuit key, then every bucket of the window.
        -- ARGV: success (1/0), bucket ttl, minimum attempts, threshold (percent), open for (ms).
        redis.call('HINCRBY', KEYS[1], 'attempts', 1)
        if ARGV[1] == '1' then redis.call('HINCRBY', KEYS[1], 'successes', 1) end
        redis.call('EXPIRE', KEYS[1], ARGV[2])
        local attempts, successes = 0, 0
        for i = 3, #KEYS do
            local v = redis.call('HMGET', KEYS[i], 'attempts', 'successes')
            attempts = attempts + tonumber(v[1] or '0')
            successes = successes + tonumber(v[2] or '0')
        end
        if attempts >= tonumber(ARGV[3]) and successes * 100 < attempts * tonumber(ARGV[4]) then
            redis.call('SET', KEYS[2], '1', 'PX', ARGV[5], 'NX')
        end
        return {attempts, successes}
        """)

    static let snapshotScript = RedisScript("""
        -- KEYS: per channel, its circuit key then its window's buckets (ARGV[1] buckets each).
        -- Returns per channel: open (1/0), attempts, successes.
        local n = tonumber(ARGV[1])
        local out = {}
        for c = 0, (#KEYS / (n + 1)) - 1 do
            local base = c * (n + 1)
            local attempts, successes = 0, 0
            for i = 2, n + 1 do
                local v = redis.call('HMGET', KEYS[base + i], 'attempts', 'successes')
                attempts = attempts + tonumber(v[1] or '0')
                successes = successes + tonumber(v[2] or '0')
            end
            table.insert(out, redis.call('EXISTS', KEYS[base + 1]))
            table.insert(out, attempts)
            table.insert(out, successes)
        end
        return out
        """)

    func windowKeys(_ channel: String, at now: Date) -> [String] {
        let current = Int(now.timeIntervalSince1970) / bucketSeconds
        return (0..<buckets).map { Self.bucketKey(channel, current - $0) }
    }

    /// Records one real outcome of `channel`; opens its circuit when the window says so.
    public func record(_ channel: String, success: Bool, at now: Date = Date()) async throws {
        _ = try await redis.eval([recordCall(channel, success: success, at: now)])
    }

    /// `record` as a script call, to send with others in one round trip.
    public func recordCall(_ channel: String, success: Bool, at now: Date = Date()) -> RedisScriptCall {
        let window = windowKeys(channel, at: now)
        return RedisScriptCall(Self.recordScript, keys: [window[0], Self.openKey(channel)] + window,
                               args: [success ? "1" : "0", String(buckets * bucketSeconds + bucketSeconds),
                                      String(ChannelRouter.circuitMinimumAttempts), String(Int(ChannelRouter.circuitThreshold * 100)),
                                      String(Int(CircuitBreaker.openFor * 1000))])
    }

    /// The window's stats of every channel, and the channels whose circuit is open now.
    public func snapshot(_ channels: [String], at now: Date = Date()) async throws -> (stats: [String: ChannelStats], open: Set<String>) {
        guard !channels.isEmpty else { return ([:], []) }
        let keys = channels.flatMap { [Self.openKey($0)] + windowKeys($0, at: now) }
        let values = try await redis.eval(Self.snapshotScript, keys: keys, args: [String(buckets)]).array ?? []
        var stats: [String: ChannelStats] = [:], open: Set<String> = []
        for (index, channel) in channels.enumerated() where values.count >= index * 3 + 3 {
            if values[index * 3].int == 1 { open.insert(channel) }
            stats[channel] = ChannelStats(attempts: Int(values[index * 3 + 1].int ?? 0), successes: Int(values[index * 3 + 2].int ?? 0))
        }
        return (stats, open)
    }

    /// Forgets a channel's window and closes its circuit (operators, tests).
    public func reset(_ channel: String, at now: Date = Date()) async throws {
        _ = try await redis.command(["DEL", Self.openKey(channel)] + windowKeys(channel, at: now))
    }
}
