import Contract
import Foundation
import Payments
import Redis

/// The velocity of a customer's payments (RULES "Risk"): a sliding window per merchant and
/// customer in Redis, shared by every replica. Check-and-count is one script keyed by the command,
/// so a redelivered command never counts twice and concurrent payments cannot slip past the limit.
public struct VelocityCounter: Sendable {
    public let redis: RedisClient

    public init(redis: RedisClient) { self.redis = redis }

    static func key(merchantId: String, customerId: String) -> String {
        "pf:risk:vel:{\(merchantId)}:\(MessageIds.sha256Hex(customerId))"
    }

    static let script = RedisScript("""
        -- KEYS: the customer's window. ARGV: now (ms), window (ms), limit, the command's key.
        -- Returns how many other payments the window held; counts this one unless that reached the limit.
        local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
        local counted = redis.call('ZSCORE', KEYS[1], ARGV[4])
        local others = redis.call('ZCARD', KEYS[1]) - (counted and 1 or 0)
        if counted or others < tonumber(ARGV[3]) then
            if not counted then redis.call('ZADD', KEYS[1], now, ARGV[4]) end
            redis.call('PEXPIRE', KEYS[1], window)
        end
        return others
        """)

    /// How many of the customer's other payments fall in the window; this one is counted unless
    /// that already reached `limit` (then it is blocked and does not count).
    public func count(merchantId: String, customerId: String, commandKey: String, limit: Int, windowSeconds: Int,
                      at now: Date) async throws -> Int {
        let reply = try await redis.eval(Self.script, keys: [Self.key(merchantId: merchantId, customerId: customerId)],
                                         args: [String(Int64(now.timeIntervalSince1970 * 1000)), String(windowSeconds * 1000),
                                                String(limit), commandKey])
        guard let others = reply.int else { throw LedgerError.unexpectedReply("\(reply)") }
        return Int(others)
    }
}
