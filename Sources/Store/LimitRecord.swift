import Foundation
import Logging
import Payments
import Postgres
import Synchronization

/// The durable side of the limit ledger: PostgreSQL holds what counts (the `limit_recorded`
/// function over payments); the Redis counters of `LimitLedger` are rebuilt from it when Redis
/// lost them, and synced back to `limit_usage` in the background (RULES "Transaction limits").
///
/// Exactness under concurrency: every command that reserves takes the merchant's lock *shared*
/// in its transaction (`sharedLock`, before reserving); a rebuild takes it *exclusive*, so it
/// reads the record only once every reservation in flight has committed or rolled back, and no new
/// one can start until the counters are back.
public struct LimitRecord: Sendable {
    public let ledger: LimitLedger
    public let pool: PostgresPool
    /// How long a rebuild waits for in-flight reservations before giving up (the command retries).
    public var lockTimeout = "10s"
    /// The rebuilds running in this process (shared by copies of this value).
    private let rebuilds = RebuildFlights()

    public init(ledger: LimitLedger, pool: PostgresPool) {
        self.ledger = ledger
        self.pool = pool
    }

    static let lockSQL = "hashtext('pf:limits'), hashtext($1)"

    /// The statement a reserving command runs first in its transaction.
    public static func sharedLock(merchantId: String) -> PostgresStatement {
        PostgresStatement("SELECT pg_advisory_xact_lock_shared(\(lockSQL))", [merchantId])
    }

    /// The merchant's lock taken exclusive: waits for every payment change of the merchant in
    /// flight, and holds off new ones until this transaction ends (a rebuild; a settlement, so no
    /// change of the day it settles can commit after it counted).
    public static func exclusiveLock(merchantId: String) -> PostgresStatement {
        PostgresStatement("SELECT pg_advisory_xact_lock(\(lockSQL))", [merchantId])
    }

    /// What the durable record counts in the merchant's day and month windows.
    public static func recorded(merchantId: String, windows: LimitWindows, on connection: PostgresConnection) async throws
        -> (day: Int64, month: Int64) {
        let row = try await connection.query("""
            SELECT limit_recorded($1, $2, $3) AS day, limit_recorded($1, $4, $5) AS month
            """, [merchantId, windows.dayStart, windows.dayEnd, windows.monthStart, windows.monthEnd]).rows[0]
        return (try row.int64("day"), try row.int64("month"))
    }

    /// What a change of a reservation adds to the durable record (`limit_entries`), to run in the
    /// transaction of the change: `amount` > 0 when it counts (kind `reserve`), < 0 when it gives
    /// back (`release`, `refund`). `countedAt` is the time whose windows counted the reservation;
    /// `at` the time of the change (a give-back lowers only a window still current then).
    public static func entry(_ kind: EntryKind, merchantId: String, limitKey: String, countedAt: Date, amount: Int64, at: Date,
                             ref: String) -> PostgresStatement {
        PostgresStatement("""
            INSERT INTO limit_entries (merchant_id, limit_key, counted_at, amount, at, kind, ref)
            VALUES ($1, $2, $3::timestamptz, $4, $5::timestamptz, $6, $7)
            """, [merchantId, limitKey, countedAt, kind == .reserve ? amount : -amount, at, kind.rawValue, ref])
    }

    /// What a `limit_entries` row records.
    public enum EntryKind: String, Sendable {
        case reserve, release, refund
    }

    /// Raises the merchant's counters to the durable record where they fell below it, under the
    /// merchant's exclusive lock (so no reservation is in flight while it reads). Returns what
    /// each counter gained.
    @discardableResult
    public func repair(merchantId: String, windows: LimitWindows) async throws -> (day: Int64, month: Int64) {
        try await withRecordUnderLock(merchantId: merchantId, windows: windows) { day, month in
            try await ledger.repair(merchantId: merchantId, windows: windows, day: day, month: month)
        }
    }

    /// Loads the merchant's counters into Redis from the durable record, unless they are loaded.
    /// Must not be called from inside a transaction that holds the merchant's shared lock.
    /// Returns true when this call loaded them.
    ///
    /// Every command of the merchant in flight finds the counters missing at once (the first
    /// payments of a month, or after Redis lost them), and each would take the merchant's lock
    /// exclusive in turn: measured on a fresh merchant, 32 such locks of 18-41 ms each, every
    /// payment of the merchant queued behind them. A call while this process already rebuilds the
    /// same counters waits for that rebuild instead (and returns false; it throws what it threw).
    @discardableResult
    public func rebuild(merchantId: String, windows: LimitWindows) async throws -> Bool {
        try await rebuilds.join("\(merchantId)\u{0}\(windows.month)") {
            try await withRecordUnderLock(merchantId: merchantId, windows: windows) { day, month in
                try await ledger.load(merchantId: merchantId, windows: windows, day: day, month: month)
            }
        }
    }

    /// `body` with the merchant's durable record, read in a transaction that holds the merchant's
    /// lock exclusive (waiting at most `lockTimeout` for the reservations in flight).
    private func withRecordUnderLock<T: Sendable>(merchantId: String, windows: LimitWindows,
                                                  _ body: @Sendable (_ day: Int64, _ month: Int64) async throws -> T) async throws -> T {
        try await pool.transaction { connection in
            _ = try await connection.batch([
                PostgresStatement("SELECT set_config('lock_timeout', $1, true)", [lockTimeout]),
                Self.exclusiveLock(merchantId: merchantId),
            ])
            let recorded = try await Self.recorded(merchantId: merchantId, windows: windows, on: connection)
            return try await body(recorded.day, recorded.month)
        }
    }
}

extension LimitRecord {
    /// One pass of the background sync: for every merchant whose counters Redis holds this month,
    /// writes the counters and the durable record to `limit_usage`. The record is read first: a
    /// payment commits only after it reserved, so correct counters read afterwards are never below
    /// it. Counters found below the record are repaired (`repair`, which reads the record again
    /// under the merchant's exclusive lock). Returns the merchants synced and those whose Redis
    /// counters were below the record and had to be raised.
    public func sync(at now: Date) async throws -> (merchants: Int, undercounted: [String]) {
        let windows = LimitWindows(at: now)
        let merchants = try await ledger.loadedMerchants(windows: windows)
        var undercounted: [String] = []
        for chunk in stride(from: 0, to: merchants.count, by: 500).map({ Array(merchants[$0..<min($0 + 500, merchants.count)]) }) {
            let recorded = try await pool.withConnection { connection in
                try await connection.query(Self.incrementalRecordSQL, [
                    PostgresArray.text(chunk), windows.day, windows.dayStart, windows.dayEnd,
                    windows.month, windows.monthStart, windows.monthEnd,
                ]).rows.map { row in
                    (try row.string("merchant_id"), try row.int64("day"), try row.int64("month"), try row.string("horizon"))
                }
            }
            let counters = try await ledger.usage(merchantIds: recorded.map(\.0), windows: windows)
            var ids: [String] = [], kinds: [String] = [], windowIds: [String] = [], used: [String] = [], durable: [String] = []
            var horizons: [String] = []
            for (index, (merchantId, day, month, horizon)) in recorded.enumerated() {
                let usage = counters[index]
                if usage.day < day || usage.month < month { undercounted.append(merchantId) }
                ids += [merchantId, merchantId]
                kinds += ["day", "month"]
                windowIds += [windows.day, windows.month]
                used += [String(usage.day), String(usage.month)]
                durable += [String(day), String(month)]
                horizons += [horizon, horizon]
            }
            _ = try await pool.withConnection { connection in
                try await connection.query("""
                    INSERT INTO limit_usage (merchant_id, window_kind, window_id, used, recorded, recorded_through, synced_at)
                    SELECT * , now() FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::xid8[])
                    ON CONFLICT (merchant_id, window_kind, window_id)
                    DO UPDATE SET used = EXCLUDED.used, recorded = EXCLUDED.recorded, recorded_through = EXCLUDED.recorded_through,
                                  synced_at = EXCLUDED.synced_at
                    """, [PostgresArray.text(ids), PostgresArray.text(kinds), PostgresArray.text(windowIds), PostgresArray.text(used),
                          PostgresArray.text(durable), PostgresArray.text(horizons)])
            }
        }
        // A counter read below the record may only be racing a give-back (Redis first, its commit
        // just after): the repair reads the record again once that commit is in, and only what
        // it then had to add was really lost.
        var repaired: [String] = []
        for merchantId in undercounted {
            let gained = try await repair(merchantId: merchantId, windows: windows)
            if gained.day > 0 || gained.month > 0 { repaired.append(merchantId) }
        }
        return (merchants.count, repaired)
    }

    /// What the record counts in each merchant's day and month windows, through a horizon: the
    /// oldest transaction still running when the statement began (`pg_snapshot_xmin`), so every
    /// entry below it is final and none to come can fall below it. A window synced before adds the
    /// entries between its last horizon and this one (the `(merchant_id, xid)` index); a window
    /// seen for the first time is summed in full, entries written before migration 10 included.
    /// The counts of the windows `limit_recorded` defines: an entry counts in a window when its
    /// reservation did, and a give-back only if it happened while the window was current.
    static let incrementalRecordSQL = """
        WITH windows (kind, window_id, since, until) AS (
            VALUES ('day', $2::text, $3::timestamptz, $4::timestamptz), ('month', $5::text, $6::timestamptz, $7::timestamptz)
        ), horizon AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xid),
        counted AS (
            SELECT m.merchant_id, w.kind, h.xid AS horizon,
                   CASE WHEN u.recorded_through IS NULL THEN (
                       SELECT COALESCE(sum(e.amount), 0) FROM limit_entries e
                       WHERE e.merchant_id = m.merchant_id AND e.counted_at >= w.since AND e.counted_at < w.until
                         AND (e.kind = 'reserve' OR (e.at >= w.since AND e.at < w.until))
                         AND (e.xid IS NULL OR e.xid < h.xid))
                   ELSE u.recorded + (
                       SELECT COALESCE(sum(e.amount), 0) FROM (
                           -- OFFSET 0 keeps the window's conditions out: only the xid index serves this.
                           SELECT amount, counted_at, at, kind FROM limit_entries
                           WHERE merchant_id = m.merchant_id AND xid >= u.recorded_through AND xid < h.xid OFFSET 0) e
                       WHERE e.counted_at >= w.since AND e.counted_at < w.until
                         AND (e.kind = 'reserve' OR (e.at >= w.since AND e.at < w.until)))
                   END AS recorded
            FROM unnest($1::text[]) AS m (merchant_id)
            CROSS JOIN windows w CROSS JOIN horizon h
            LEFT JOIN limit_usage u ON u.merchant_id = m.merchant_id AND u.window_kind = w.kind AND u.window_id = w.window_id
        )
        SELECT merchant_id, horizon::text AS horizon,
               max(recorded) FILTER (WHERE kind = 'day')::bigint AS day, max(recorded) FILTER (WHERE kind = 'month')::bigint AS month
        FROM counted GROUP BY merchant_id, horizon
        """
}

/// One rebuild at a time per key in this process; later callers wait for the running one.
private final class RebuildFlights: Sendable {
    private let running = Mutex<[String: Task<Bool, any Error>]>([:])

    func join(_ key: String, _ rebuild: @escaping @Sendable () async throws -> Bool) async throws -> Bool {
        let (task, leads) = running.withLock { running in
            if let task = running[key] { return (task, false) }
            let task = Task { try await rebuild() }
            running[key] = task
            return (task, true)
        }
        guard leads else {
            _ = try await task.value
            return false
        }
        defer { running.withLock { _ = $0.removeValue(forKey: key) } }
        return try await task.value
    }
}
