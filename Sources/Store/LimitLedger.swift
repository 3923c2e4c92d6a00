import Foundation
import Payments
import Redis

/// The transaction-limit counters in Redis (RULES "Transaction limits").
///
/// Reserve, commit, release and refund-return are Lua scripts keyed by the command, so a
/// redelivered command never counts twice and no number of concurrent workers can push a window
/// past its limit. Window keys expire by themselves shortly after their window ends. All of a
/// merchant's keys share the hash tag `{merchant_id}`. Redis may lose the counters: a month's
/// `loaded` marker says they are there, and `LimitRecord` rebuilds them from PostgreSQL.
public struct LimitLedger: Sendable {
    public let redis: RedisClient
    /// How long a reservation record is kept (redeliveries and releases within it are recognised).
    public var reservationTTLSeconds = 3 * 24 * 3600
    /// Window keys live this long past their window's end.
    static let graceSeconds = 3600

    public init(redis: RedisClient) { self.redis = redis }

    /// The result of a reservation attempt.
    public enum Reservation: Sendable, Equatable {
        /// Counted now.
        case reserved
        /// This reservation key is already counted (a redelivery): nothing changed.
        case alreadyReserved
        /// This reservation key is held for another amount (another command reusing the key while
        /// the first is retrying): nothing changed, and nothing may pass on it.
        case conflict
        /// Over a limit: nothing changed.
        case exceeded(LimitKind)
        /// Redis does not hold this merchant's counters for the month (first use, restart without
        /// persistence, `FLUSHALL`): nothing changed; rebuild them, then try again.
        case notLoaded
    }

    public enum LimitKind: String, Sendable, Equatable {
        case single, daily, monthly
    }

    // Every script refuses to guess: a missing reservation record is a no-op, never a negative
    // count, and a missing counter is only read as zero once the month's marker says it was loaded.

    static let reserveScript = RedisScript("""
        -- KEYS: day window, month window, reservation record, the month's loaded marker
        -- ARGV: amount, single, daily, monthly limits, day ttl, month ttl, reservation ttl
        -- A released record counts again: its command's transaction rolled back after releasing.
        local held = redis.call('HMGET', KEYS[3], 'state', 'amount')
        if held[1] == 'reserved' then
            if held[2] ~= ARGV[1] then return {0, 'conflict'} end
            return {1, 'already_reserved'}
        end
        if redis.call('EXISTS', KEYS[4]) == 0 then return {0, 'not_loaded'} end
        local amount = tonumber(ARGV[1])
        if amount > tonumber(ARGV[2]) then return {0, 'single'} end
        if tonumber(redis.call('GET', KEYS[1]) or '0') + amount > tonumber(ARGV[3]) then return {0, 'daily'} end
        if tonumber(redis.call('GET', KEYS[2]) or '0') + amount > tonumber(ARGV[4]) then return {0, 'monthly'} end
        redis.call('INCRBY', KEYS[1], ARGV[1])
        redis.call('EXPIRE', KEYS[1], ARGV[5])
        redis.call('INCRBY', KEYS[2], ARGV[1])
        redis.call('EXPIRE', KEYS[2], ARGV[6])
        redis.call('DEL', KEYS[3])
        redis.call('HSET', KEYS[3], 'state', 'reserved', 'amount', ARGV[1], 'captured', 0, 'day', KEYS[1], 'month', KEYS[2])
        redis.call('EXPIRE', KEYS[3], ARGV[7])
        return {1, 'reserved'}
        """)

    /// The reserve script's source, for benchmarks that run the same script through another client.
    public static var reserveScriptSource: String { reserveScript.source }

    static let commitScript = RedisScript("""
        -- KEYS: reservation record. ARGV: amount captured now (a payment captures all of it), the
        -- capture's own key (a payment's is its command's). Marks it captured, once per capture key,
        -- so a later release gives back only what was not captured.
        local r = redis.call('HMGET', KEYS[1], 'state', 'amount', 'captured', 'c:' .. ARGV[2])
        if r[1] ~= 'reserved' then return -1 end
        if r[4] then return tonumber(r[3]) end
        local captured = tonumber(r[3] or '0') + tonumber(ARGV[1])
        if captured > tonumber(r[2]) then return -2 end
        redis.call('HSET', KEYS[1], 'captured', captured, 'c:' .. ARGV[2], ARGV[1])
        return captured
        """)

    static let releaseScript = RedisScript("""
        -- KEYS: reservation record. ARGV: the current day window key, the current month window key,
        -- and optionally what the durable record gives back, the day and month window keys that
        -- counted it, the record ttl.
        -- Gives what was not captured back to the windows that counted it, if they are still current.
        local r = redis.call('HMGET', KEYS[1], 'state', 'amount', 'captured', 'day', 'month')
        if r[1] == false and ARGV[3] then
            -- The record is gone (lost with Redis, or past its ttl) while the counters still hold
            -- the reservation (rebuilt from PostgreSQL, which counted it: a rebuild waits for every
            -- reserving transaction): give back what the durable record gives back, once.
            local back = tonumber(ARGV[3])
            for i = 1, 2 do
                local key = ARGV[3 + i]
                if back > 0 and key == ARGV[i] and redis.call('EXISTS', key) == 1 then
                    redis.call('SET', key, math.max(tonumber(redis.call('GET', key)) - back, 0), 'KEEPTTL')
                end
            end
            redis.call('HSET', KEYS[1], 'state', 'released')
            redis.call('EXPIRE', KEYS[1], ARGV[6])
            return 2
        end
        if r[1] ~= 'reserved' then return 0 end
        local back = tonumber(r[2]) - tonumber(r[3] or '0')
        for i = 4, 5 do
            if back > 0 and r[i] == ARGV[i - 3] and redis.call('EXISTS', r[i]) == 1 then redis.call('DECRBY', r[i], back) end
        end
        redis.call('HSET', KEYS[1], 'state', 'released')
        return 1
        """)

    static let refundScript = RedisScript("""
        -- KEYS: the refund's record, the payment's day window, the payment's month window.
        -- ARGV: amount, the current day window key, the current month window key, record ttl.
        -- Gives a refund's amount back to the windows that counted the payment, only if they are
        -- still current, once per refund command; never below zero.
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        for i = 2, 3 do
            if KEYS[i] == ARGV[i] and redis.call('EXISTS', KEYS[i]) == 1 then
                local left = tonumber(redis.call('GET', KEYS[i])) - tonumber(ARGV[1])
                redis.call('SET', KEYS[i], math.max(left, 0), 'KEEPTTL')
            end
        end
        redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
        return 1
        """)

    static let loadScript = RedisScript("""
        -- KEYS: the month's loaded marker, day window, month window. ARGV: day used, month used, day ttl, month ttl.
        -- Sets the counters from the durable record unless another rebuild did so first.
        if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
        redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
        redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[4])
        redis.call('SET', KEYS[1], '1', 'EX', ARGV[4])
        return 1
        """)

    static let repairScript = RedisScript("""
        -- KEYS: the month's loaded marker, day window, month window. ARGV: day record, month record,
        -- day ttl, month ttl. Raises counters that fell below the durable record (an increment lost
        -- while the marker survived, as after a crash with appendfsync everysec); never lowers one.
        -- Returns how much was added to each.
        if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
        local added = {}
        for i = 2, 3 do
            local current = tonumber(redis.call('GET', KEYS[i]) or '0')
            local record = tonumber(ARGV[i - 1])
            if current < record then
                redis.call('SET', KEYS[i], record, 'EX', ARGV[i + 1])
                added[i - 1] = record - current
            else
                added[i - 1] = 0
            end
        end
        return added
        """)

    static func windowKey(_ merchantId: String, _ kind: String, _ window: String) -> String {
        "pf:lim:{\(merchantId)}:\(kind):\(window)"
    }

    static func reservationKey(_ merchantId: String, _ key: String) -> String { "pf:lim:{\(merchantId)}:r:\(key)" }
    static func refundKey(_ merchantId: String, _ key: String) -> String { "pf:lim:{\(merchantId)}:f:\(key)" }
    static func loadedKey(_ merchantId: String, _ month: String) -> String { "pf:lim:{\(merchantId)}:loaded:\(month)" }
    /// The month's list of merchants whose counters were loaded: what the background sync reads.
    /// It used to `SCAN` for the markers, which walks every key in Redis: with three days of
    /// reservation records (1.6 million keys after a few benchmark runs) a pass cost Redis 2.4 s.
    static func loadedIndexKey(_ month: String) -> String { "pf:lim:index:loaded:\(month)" }
    /// Set once the month's list also holds the markers set before lists existed (found by one
    /// `SCAN`: counters loaded by an earlier release). Without the list itself (evicted, or no load
    /// yet this month), the flag does not count.
    static func indexCompleteKey(_ month: String) -> String { "pf:lim:index:complete:\(month)" }

    private func windowKeys(_ merchantId: String, _ windows: LimitWindows) -> [String] {
        [Self.windowKey(merchantId, "d", windows.day), Self.windowKey(merchantId, "m", windows.month)]
    }

    private func ttls(_ windows: LimitWindows) -> [String] {
        [String(windows.secondsToDayEnd + Self.graceSeconds), String(windows.secondsToMonthEnd + Self.graceSeconds)]
    }

    /// Checks `amount` (base-currency minor units) against `limits` and reserves it, atomically.
    ///
    /// Call it inside the command's transaction after `LimitRecord.sharedLock`, so that a rebuild
    /// can wait for every reservation in flight to commit or roll back.
    public func reserve(merchantId: String, reservationKey: String, amount: Int64, limits: EffectiveLimits,
                        windows: LimitWindows) async throws -> Reservation {
        let reply = try await redis.eval(Self.reserveScript,
            keys: windowKeys(merchantId, windows) + [Self.reservationKey(merchantId, reservationKey),
                                                     Self.loadedKey(merchantId, windows.month)],
            args: [String(amount), String(limits.single), String(limits.daily), String(limits.monthly)] + ttls(windows)
                + [String(reservationTTLSeconds)])
        guard let parts = reply.array, parts.count == 2, let code = parts[1].string else {
            throw LedgerError.unexpectedReply("\(reply)")
        }
        switch code {
        case "reserved": return .reserved
        case "already_reserved": return .alreadyReserved
        case "conflict": return .conflict
        case "not_loaded": return .notLoaded
        default:
            guard let kind = LimitKind(rawValue: code) else { throw LedgerError.unexpectedReply(code) }
            return .exceeded(kind)
        }
    }

    /// Marks `amount` of a reservation captured (a succeeded payment captures all of it; a
    /// pre-authorization's capture part of it), once per `captureKey` (default: the reservation's
    /// own key). Returns what is captured in all, or nil when the reservation is not currently held
    /// (released, or lost with Redis: then the rebuild counted the payment).
    @discardableResult
    public func commit(merchantId: String, reservationKey: String, amount: Int64, captureKey: String? = nil) async throws -> Int64? {
        let replies = try await redis.eval([commitCall(merchantId: merchantId, reservationKey: reservationKey, amount: amount,
                                                       captureKey: captureKey)])
        return try Self.captured(replies[0], reservationKey: reservationKey)
    }

    /// `commit` as a script call, to send with others in one round trip; read its reply with `captured`.
    public func commitCall(merchantId: String, reservationKey: String, amount: Int64, captureKey: String? = nil) -> RedisScriptCall {
        RedisScriptCall(Self.commitScript, keys: [Self.reservationKey(merchantId, reservationKey)],
                        args: [String(amount), captureKey ?? reservationKey])
    }

    /// What a commit's reply says: the captured total, or nil when the reservation is not held.
    public static func captured(_ reply: RedisValue, reservationKey: String) throws -> Int64? {
        guard let captured = reply.int else { throw LedgerError.unexpectedReply("\(reply)") }
        if captured == -2 { throw LedgerError.overCapture(reservationKey) }
        return captured >= 0 ? captured : nil
    }

    /// Releases a reservation (failed, cancelled, expired, timed out): gives back what was not
    /// captured, to the windows that counted it if they are still current (`windows`: now's).
    /// A no-op unless it is currently reserved. Returns true when the reservation was released.
    ///
    /// `recorded`: what the durable record gives back (`limit_entries`) and when the reservation
    /// was counted. When the reservation's record is gone (Redis lost it and the counters were
    /// rebuilt from PostgreSQL, or it outlived its ttl) but the counters still hold it, that amount
    /// is given back instead, once; without it such a release would leave the counter too high.
    @discardableResult
    public func release(merchantId: String, reservationKey: String, windows: LimitWindows,
                        recorded: (amount: Int64, countedAt: Date)? = nil) async throws -> Bool {
        var args = windowKeys(merchantId, windows)
        if let recorded {
            args += [String(recorded.amount)] + windowKeys(merchantId, LimitWindows(at: recorded.countedAt)) + [String(reservationTTLSeconds)]
        }
        let reply = try await redis.eval(Self.releaseScript, keys: [Self.reservationKey(merchantId, reservationKey)], args: args)
        return reply.int == 1 || reply.int == 2
    }

    /// A refund gives `amount` back to the windows that counted the payment (`paymentWindows`),
    /// only if they are still current (`windows`), once per refund command (`refundKey`).
    /// Returns false for a repeated refund key.
    @discardableResult
    public func refundReturn(merchantId: String, refundKey: String, amount: Int64, paymentWindows: LimitWindows,
                             windows: LimitWindows) async throws -> Bool {
        let reply = try await redis.eval(Self.refundScript,
            keys: [Self.refundKey(merchantId, refundKey)] + windowKeys(merchantId, paymentWindows),
            args: [String(amount)] + windowKeys(merchantId, windows) + [String(reservationTTLSeconds)])
        return reply.int == 1
    }

    /// Raises the merchant's counters to the durable record where they are below it; returns how
    /// much each gained. `LimitRecord.repair` calls it under the merchant's exclusive lock.
    @discardableResult
    public func repair(merchantId: String, windows: LimitWindows, day: Int64, month: Int64) async throws -> (day: Int64, month: Int64) {
        let reply = try await redis.eval(Self.repairScript,
            keys: [Self.loadedKey(merchantId, windows.month)] + windowKeys(merchantId, windows),
            args: [String(day), String(month)] + ttls(windows))
        guard let parts = reply.array, parts.count == 2, let day = parts[0].int, let month = parts[1].int else {
            throw LedgerError.unexpectedReply("\(reply)")
        }
        return (day, month)
    }

    /// What the merchant's current day and month windows have counted.
    public func usage(merchantId: String, windows: LimitWindows) async throws -> (day: Int64, month: Int64) {
        try await usage(merchantIds: [merchantId], windows: windows)[0]
    }

    /// What several merchants' current windows have counted, in one round trip.
    public func usage(merchantIds: [String], windows: LimitWindows) async throws -> [(day: Int64, month: Int64)] {
        let values = try await redis.pipeline(merchantIds.flatMap { windowKeys($0, windows).map { ["GET", $0] } })
        return merchantIds.indices.map { (values[2 * $0].int ?? 0, values[2 * $0 + 1].int ?? 0) }
    }

    /// Whether Redis holds the merchant's counters for `windows`' month.
    public func isLoaded(merchantId: String, windows: LimitWindows) async throws -> Bool {
        try await redis.command(["EXISTS", Self.loadedKey(merchantId, windows.month)]).int == 1
    }

    /// Sets the merchant's day and month counters from the durable record unless they are loaded.
    /// Returns false when another rebuild loaded them first. `LimitRecord.rebuild` calls it under
    /// the merchant's exclusive lock.
    @discardableResult
    public func load(merchantId: String, windows: LimitWindows, day: Int64, month: Int64) async throws -> Bool {
        // Listed before it is loaded: a crash in between leaves a listed merchant that is not
        // loaded (the sync skips it), never a loaded one the sync cannot find. A separate command,
        // not in the script: the list is not under the merchant's hash tag.
        let index = Self.loadedIndexKey(windows.month)
        try Self.check(try await redis.pipeline([["SADD", index, merchantId], ["EXPIRE", index, ttls(windows)[1]]]))
        let reply = try await redis.eval(Self.loadScript,
            keys: [Self.loadedKey(merchantId, windows.month)] + windowKeys(merchantId, windows),
            args: [String(day), String(month)] + ttls(windows))
        return reply.int == 1
    }
}

extension LimitLedger {
    /// The merchants whose counters Redis holds for `windows`' month, sorted: the month's list
    /// (`loadedIndexKey`), less those whose marker is gone (lost, expired, or a crash between
    /// listing and loading). A call that finds the month's list missing or not known complete
    /// first lists the markers a `SCAN` finds: once a month when all is well.
    public func loadedMerchants(windows: LimitWindows) async throws -> [String] {
        let index = Self.loadedIndexKey(windows.month), complete = Self.indexCompleteKey(windows.month)
        let ttl = ttls(windows)[1]
        if try await redis.command(["EXISTS", complete, index]).int != 2 {
            let found = try await scan(["SCAN", "0", "MATCH", Self.loadedKey("*", windows.month), "COUNT", "1000"]).compactMap { key in
                key.firstIndex(of: "{").flatMap { open in
                    key.lastIndex(of: "}").flatMap { close in open < close ? String(key[key.index(after: open)..<close]) : nil }
                }
            }
            let additions = stride(from: 0, to: found.count, by: 500).map { ["SADD", index] + found[$0..<min($0 + 500, found.count)] }
            try Self.check(try await redis.pipeline(additions + [["EXPIRE", index, ttl], ["SET", complete, "1", "EX", ttl]]))
        }
        let listed = Array(Set(try await scan(["SSCAN", index, "0", "COUNT", "1000"]))).sorted()
        var loaded: [String] = []
        for start in stride(from: 0, to: listed.count, by: 1_000) {
            let chunk = listed[start..<min(start + 1_000, listed.count)]
            let replies = try await redis.pipeline(chunk.map { ["EXISTS", Self.loadedKey($0, windows.month)] })
            try Self.check(replies)
            loaded += zip(chunk, replies).compactMap { $1.int == 1 ? $0 : nil }
        }
        return loaded
    }

    /// Every key (`SCAN`) or member (`SSCAN`) a cursor walk returns; `command` holds the cursor "0"
    /// after its verb (and key).
    private func scan(_ command: [String]) async throws -> [String] {
        let cursorAt = command[0] == "SCAN" ? 1 : 2
        var command = command, items: [String] = []
        repeat {
            let reply = try await redis.command(command)
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string, let page = parts[1].array else {
                throw LedgerError.unexpectedReply("\(reply)")
            }
            items += page.compactMap(\.string)
            command[cursorAt] = next
        } while command[cursorAt] != "0"
        return items
    }

    /// Throws the first error reply of a pipeline.
    static func check(_ replies: [RedisValue]) throws {
        for reply in replies { if case .error = reply { throw LedgerError.unexpectedReply("\(reply)") } }
    }
}

/// A Redis script of the store (limits, rate limit) answered something it never returns, or a
/// caller asked for something the ledger refuses.
public enum LedgerError: Error, CustomStringConvertible {
    case unexpectedReply(String)
    /// A capture larger than what the reservation still holds: a bug in the caller, never money.
    case overCapture(String)
    public var description: String {
        switch self {
        case .unexpectedReply(let reply): "unexpected reply from a Redis script: \(reply)"
        case .overCapture(let key): "capture exceeds what reservation \(key) holds"
        }
    }
}
