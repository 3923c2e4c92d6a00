import Payments
import Redis

/// The transaction-limit counters in Redis (RULES "Transaction limits").
///
/// Check-and-reserve is one Lua script, keyed by the command's reservation key, so a redelivered
/// command never reserves twice and no number of concurrent workers can push a window past its
/// limit. Window keys expire by themselves shortly after their window ends. All of a merchant's
/// keys share the hash tag `{merchant_id}`.
public struct LimitLedger: Sendable {
    public let redis: RedisClient
    /// How long a reservation record is kept (redeliveries and releases within it are recognised).
    public var reservationTTLSeconds = 3 * 24 * 3600

    public init(redis: RedisClient) { self.redis = redis }

    /// The result of a reservation attempt.
    public enum Reservation: Sendable, Equatable {
        /// Counted now.
        case reserved
        /// This reservation key was already counted (a redelivery): nothing changed.
        case alreadyReserved
        /// Over a limit: nothing changed.
        case exceeded(LimitKind)
    }

    public enum LimitKind: String, Sendable, Equatable {
        case single, daily, monthly
    }

    static let reserveScript = RedisScript("""
        -- KEYS: day window, month window, reservation record
        -- ARGV: amount, single, daily, monthly limits, day ttl, month ttl, reservation ttl
        if redis.call('HGET', KEYS[3], 'state') == 'reserved' then return {1, 'already_reserved'} end
        local amount = tonumber(ARGV[1])
        if amount > tonumber(ARGV[2]) then return {0, 'single'} end
        if tonumber(redis.call('GET', KEYS[1]) or '0') + amount > tonumber(ARGV[3]) then return {0, 'daily'} end
        if tonumber(redis.call('GET', KEYS[2]) or '0') + amount > tonumber(ARGV[4]) then return {0, 'monthly'} end
        redis.call('INCRBY', KEYS[1], ARGV[1])
        redis.call('EXPIRE', KEYS[1], ARGV[5])
        redis.call('INCRBY', KEYS[2], ARGV[1])
        redis.call('EXPIRE', KEYS[2], ARGV[6])
        redis.call('HSET', KEYS[3], 'state', 'reserved', 'amount', ARGV[1], 'day', KEYS[1], 'month', KEYS[2])
        redis.call('EXPIRE', KEYS[3], ARGV[7])
        return {1, 'reserved'}
        """)

    static let releaseScript = RedisScript("""
        -- KEYS: reservation record. Gives the amount back to the windows that counted it, if they still exist.
        if redis.call('HGET', KEYS[1], 'state') ~= 'reserved' then return 0 end
        local r = redis.call('HMGET', KEYS[1], 'amount', 'day', 'month')
        for i = 2, 3 do
            if redis.call('EXISTS', r[i]) == 1 then redis.call('DECRBY', r[i], r[1]) end
        end
        redis.call('HSET', KEYS[1], 'state', 'released')
        return 1
        """)

    static func windowKey(_ merchantId: String, _ kind: String, _ window: String) -> String {
        "pf:lim:{\(merchantId)}:\(kind):\(window)"
    }

    static func reservationKey(_ merchantId: String, _ key: String) -> String {
        "pf:lim:{\(merchantId)}:r:\(key)"
    }

    /// Checks `amount` (base-currency minor units) against `limits` and reserves it, atomically.
    public func reserve(merchantId: String, reservationKey: String, amount: Int64, limits: EffectiveLimits,
                        windows: LimitWindows) async throws -> Reservation {
        let grace = 3600
        let reply = try await redis.eval(Self.reserveScript,
            keys: [Self.windowKey(merchantId, "d", windows.day), Self.windowKey(merchantId, "m", windows.month),
                   Self.reservationKey(merchantId, reservationKey)],
            args: [String(amount), String(limits.single), String(limits.daily), String(limits.monthly),
                   String(windows.secondsToDayEnd + grace), String(windows.secondsToMonthEnd + grace),
                   String(reservationTTLSeconds)])
        guard let parts = reply.array, parts.count == 2, let code = parts[1].string else {
            throw LedgerError.unexpectedReply("\(reply)")
        }
        switch code {
        case "reserved": return .reserved
        case "already_reserved": return .alreadyReserved
        default:
            guard let kind = LimitKind(rawValue: code) else { throw LedgerError.unexpectedReply(code) }
            return .exceeded(kind)
        }
    }

    /// Releases a reservation (failed, cancelled, expired); a no-op if it is not currently reserved.
    /// Returns true when something was given back.
    @discardableResult
    public func release(merchantId: String, reservationKey: String) async throws -> Bool {
        let reply = try await redis.eval(Self.releaseScript, keys: [Self.reservationKey(merchantId, reservationKey)], args: [])
        return reply.int == 1
    }

    /// What the merchant's current day and month windows have counted.
    public func usage(merchantId: String, windows: LimitWindows) async throws -> (day: Int64, month: Int64) {
        let values = try await redis.pipeline([
            ["GET", Self.windowKey(merchantId, "d", windows.day)],
            ["GET", Self.windowKey(merchantId, "m", windows.month)],
        ])
        return (values[0].int ?? 0, values[1].int ?? 0)
    }
}

/// A Redis script of the store (limits, rate limit) answered something it never returns.
public enum LedgerError: Error, CustomStringConvertible {
    case unexpectedReply(String)
    public var description: String {
        switch self {
        case .unexpectedReply(let reply): "unexpected reply from a Redis script: \(reply)"
        }
    }
}
