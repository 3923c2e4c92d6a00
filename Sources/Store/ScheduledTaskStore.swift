import Foundation
import Postgres

/// The clock's record (`scheduled_tasks`): one row per task and slot, unique on the pair, in the
/// states `pending`, `running`, `completed`, `failed` and `skipped`. A row moves to `running` under
/// the clock's lock token, and to `completed` or `failed` only under that same token (fencing):
/// a clock that lost its lease can no longer finish a slot another clock has taken over.
public struct ScheduledTaskStore: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    public enum Status: String, Sendable, CaseIterable {
        case pending, running, completed, failed, skipped
    }

    public struct Row: Sendable, Equatable {
        public var task: String
        public var slot: Date
        public var status: Status
        public var attempts: Int
        public var commandId: String?
        public var error: String?
        public var finishedAt: Date?
    }

    /// The latest slot recorded for `task`, whatever its state.
    public func latestSlot(task: String) async throws -> Date? {
        try await pool.query("SELECT max(slot) AS slot FROM scheduled_tasks WHERE task = $1", [task]).first?.optionalDate("slot")
    }

    /// Records the slots to run (`pending`) and the ones catch-up leaves out (`skipped`, with the
    /// reason), in one transaction; rows already there are left as they are.
    public func plan(task: String, run: [Date], skip: [Date], reason: String) async throws {
        try await pool.transaction { tx in
            var statements: [PostgresStatement] = []
            if !skip.isEmpty {
                statements.append(PostgresStatement("""
                    INSERT INTO scheduled_tasks (task, slot, status, error, finished_at)
                    SELECT $1, s, 'skipped', $3, now() FROM unnest($2::timestamptz[]) AS s
                    ON CONFLICT (task, slot) DO NOTHING
                    """, [task, Self.array(skip), reason]))
            }
            if !run.isEmpty {
                statements.append(PostgresStatement("""
                    INSERT INTO scheduled_tasks (task, slot, status) SELECT $1, s, 'pending' FROM unnest($2::timestamptz[]) AS s
                    ON CONFLICT (task, slot) DO NOTHING
                    """, [task, Self.array(run)]))
            }
            _ = try await tx.batch(statements)
        }
    }

    /// Slots of `task` still to run: `pending`; `failed` ones last tried before `retryBefore`; and
    /// `running` ones under another token (their clock died or lost its lease) started before
    /// `staleBefore`. Oldest first.
    public func runnable(task: String, token: String, retryBefore: Date, staleBefore: Date) async throws -> [Date] {
        try await pool.query("""
            SELECT slot FROM scheduled_tasks
            WHERE task = $1 AND (status = 'pending'
                OR (status = 'failed' AND coalesce(finished_at, created_at) < $3::timestamptz)
                OR (status = 'running' AND lock_token IS DISTINCT FROM $2 AND started_at < $4::timestamptz))
            ORDER BY slot
            """, [task, token, retryBefore, staleBefore]).rows.map { try $0.date("slot") }
    }

    /// Takes a slot under `token`: to `running`, if it is still runnable. False when another
    /// clock took it first.
    public func start(task: String, slot: Date, token: String, commandId: String, at time: Date) async throws -> Bool {
        try await pool.query("""
            UPDATE scheduled_tasks SET status = 'running', lock_token = $3, command_id = $4, attempts = attempts + 1,
                started_at = $5::timestamptz, error = NULL
            WHERE task = $1 AND slot = $2::timestamptz AND status IN ('pending', 'failed', 'running')
              AND (status <> 'running' OR lock_token IS DISTINCT FROM $3)
            """, [task, slot, token, commandId, time]).affectedRows == 1
    }

    /// Ends a running slot as `completed` or `failed`, only under the token that started it.
    /// False when the token no longer holds it (fenced out).
    public func finish(task: String, slot: Date, token: String, status: Status, error: String? = nil, at time: Date) async throws -> Bool {
        try await pool.query("""
            UPDATE scheduled_tasks SET status = $4, error = $5, finished_at = $6::timestamptz
            WHERE task = $1 AND slot = $2::timestamptz AND status = 'running' AND lock_token = $3
            """, [task, slot, token, status.rawValue, error, time]).affectedRows == 1
    }

    /// The last `limit` slots of every task, newest first.
    public func recent(limit: Int) async throws -> [Row] {
        try await pool.query("""
            SELECT task, slot, status, attempts, command_id, error, finished_at FROM (
                SELECT *, row_number() OVER (PARTITION BY task ORDER BY slot DESC) AS n FROM scheduled_tasks) t
            WHERE n <= $1 ORDER BY task, slot DESC
            """, [limit]).rows.map { row in
            Row(task: try row.string("task"), slot: try row.date("slot"),
                status: Status(rawValue: try row.string("status")) ?? .failed, attempts: try row.int("attempts"),
                commandId: try row.optionalString("command_id"), error: try row.optionalString("error"),
                finishedAt: try row.optionalDate("finished_at"))
        }
    }

    static func array(_ dates: [Date]) -> String {
        "{" + dates.compactMap { $0.postgresText.map { "\"\($0)\"" } }.joined(separator: ",") + "}"
    }
}
