import Foundation
import Redis
import Synchronization

/// A lease in Redis that one process at a time holds (RULES "Scheduler"): `SET key token NX PX`
/// with a random token, renewed by a compare-and-pexpire script while its holder runs, and
/// released by a compare-and-delete script. Each acquisition draws a new token, which is also a
/// fencing token: a write guarded by it (`... WHERE lock_token = $token`) fails once another
/// process took the lease over, even if the old holder has not noticed yet.
public final class LeaderLock: Sendable {
    public let key: String
    public let lease: Duration
    let redis: RedisClient
    private let held = Mutex<String?>(nil)

    public init(redis: RedisClient, key: String, lease: Duration) {
        self.redis = redis
        self.key = key
        self.lease = lease
    }

    static let renewScript = RedisScript("""
        -- KEYS: the lock. ARGV: token, lease ms. Extends the lease only for its holder.
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return 0
        """)

    static let releaseScript = RedisScript("""
        -- KEYS: the lock. ARGV: token. Deletes it only for its holder.
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """)

    private var leaseMilliseconds: String {
        let (seconds, attoseconds) = lease.components
        return String(max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000))
    }

    /// The token of the lease this process holds now, or nil.
    public var token: String? { held.withLock { $0 } }

    /// Renews the lease if this process holds it, else tries to take it. Returns the fencing token
    /// while this process holds the lease, nil when another one does.
    @discardableResult
    public func acquireOrRenew() async throws -> String? {
        if let token = self.token {
            if try await redis.eval(Self.renewScript, keys: [key], args: [token, leaseMilliseconds]).int == 1 { return token }
            held.withLock { if $0 == token { $0 = nil } }
        }
        let token = MessageToken.random()
        guard try await redis.command(["SET", key, token, "NX", "PX", leaseMilliseconds]).string == "OK" else { return nil }
        held.withLock { $0 = token }
        return token
    }

    /// Gives the lease up if this process holds it (compare-and-delete: never another's).
    public func release() async {
        guard let token = held.withLock({ state -> String? in defer { state = nil }; return state }) else { return }
        _ = try? await redis.eval(Self.releaseScript, keys: [key], args: [token])
    }
}

/// Random tokens for leases.
enum MessageToken {
    static func random() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(generator.next() as UInt64, radix: 16) }.joined(separator: "-")
    }
}
