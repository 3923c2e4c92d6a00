import Redis

/// Requests per minute per merchant, counted in Redis so that the limit holds across every
/// ingress replica (RULES "Merchant tiers": API requests per minute). A fixed one-minute window
/// per merchant, counted and checked in one Lua step.
public struct RateLimiter: Sendable {
    public let redis: RedisClient
    public init(redis: RedisClient) { self.redis = redis }

    /// The state of a merchant's window after counting one request.
    public struct Decision: Sendable, Equatable {
        public var allowed: Bool
        public var limit: Int
        public var remaining: Int
        /// Seconds until the window resets.
        public var resetSeconds: Int

        /// `RateLimit-*` headers (IETF draft), plus `Retry-After` when refused.
        public var headers: [String: String] {
            var headers = ["RateLimit-Limit": "\(limit)", "RateLimit-Remaining": "\(remaining)",
                           "RateLimit-Reset": "\(resetSeconds)", "RateLimit-Policy": "\(limit);w=60"]
            if !allowed { headers["Retry-After"] = "\(resetSeconds)" }
            return headers
        }
    }

    static let script = RedisScript("""
        -- KEYS: the window's counter. ARGV: limit. Returns {count, ttl}.
        local count = redis.call('INCR', KEYS[1])
        if count == 1 then redis.call('EXPIRE', KEYS[1], 60) end
        local ttl = redis.call('TTL', KEYS[1])
        if ttl < 0 then redis.call('EXPIRE', KEYS[1], 60); ttl = 60 end
        return {count, ttl}
        """)

    /// Counts one request of `merchantId` against `perMinute`.
    public func hit(merchantId: String, perMinute: Int) async throws -> Decision {
        let reply = try await redis.eval(Self.script, keys: ["pf:rl:{\(merchantId)}"], args: [String(perMinute)])
        guard let parts = reply.array, parts.count == 2, let count = parts[0].int, let ttl = parts[1].int else {
            throw LedgerError.unexpectedReply("\(reply)")
        }
        return Decision(allowed: count <= perMinute, limit: perMinute, remaining: max(0, perMinute - Int(count)),
                        resetSeconds: max(1, Int(ttl)))
    }
}
