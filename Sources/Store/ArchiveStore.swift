import Foundation
import Postgres

/// A table the archive ages out (RULES "Archive"): rows older than `keepDays` by `timeColumn`
/// move to `<name>_archive`, `batch` rows per transaction.
public struct ArchiveTable: Sendable, Equatable {
    public let name: String
    public let timeColumn: String
    public var keepDays: Int
    public var batch: Int

    /// RULES' table: what is archived, after how long, in batches of how many.
    public static let standard: [ArchiveTable] = [
        ArchiveTable(name: "payment_callbacks", timeColumn: "received_at", keepDays: 90, batch: 1_000),
        ArchiveTable(name: "notifications", timeColumn: "created_at", keepDays: 30, batch: 1_000),
        ArchiveTable(name: "audit_logs", timeColumn: "created_at", keepDays: 180, batch: 500),
        ArchiveTable(name: "risk_events", timeColumn: "created_at", keepDays: 90, batch: 1_000),
    ]

    public var archive: String { "\(name)_archive" }
}

/// Moves rows to the archive tables. Each batch is one statement in its own transaction: the rows
/// are deleted from the live table and inserted into the archive, and the run's count grows, all
/// or nothing; so a worker killed mid-run loses and doubles no row (the archive's primary key
/// would refuse a double), and the next run goes on where it stopped. `SKIP LOCKED` keeps two
/// runs off each other's rows, and short lock and statement timeouts keep a batch from queueing
/// behind live traffic.
public struct ArchiveStore: Sendable {
    public init() {}

    /// Moves up to `table.batch` rows older than `cutoff`, oldest first; returns how many.
    public func moveBatch(_ table: ArchiveTable, olderThan cutoff: Date, run: String, pool: PostgresPool) async throws -> Int {
        try await pool.transaction { tx in
            let results = try await tx.batch([
                PostgresStatement("SET LOCAL lock_timeout = '2s'"),
                PostgresStatement("SET LOCAL statement_timeout = '60s'"),
                PostgresStatement(Self.moveSQL(table), [cutoff, table.batch, run, table.name]),
            ])
            return try results[2].rows[0].int("n")
        }
    }

    /// One batch (`$1` cutoff, `$2` batch size, `$3` run, `$4` table name): the rows are locked
    /// once, by an `ARRAY` subquery (run once), and deleted by their `ctid` (a TID scan, no index),
    /// the idiom of PostgreSQL's `DELETE` documentation. The earlier `WHERE id IN (SELECT ... LIMIT
    /// $2 FOR UPDATE SKIP LOCKED)` could be planned as a semi-join that ran the locking subquery
    /// once per row of the table: on a table whose statistics said it was empty (a vacuum after a
    /// big archive run) it read 18 million buffers for 6,000 rows and moved all 6,000 instead of
    /// a batch of 1,000 (measured); on a large table it would hit the statement timeout every time.
    /// A row locked here cannot move before the delete (the archive's rows are not updated anyway).
    static func moveSQL(_ table: ArchiveTable) -> String {
        """
        WITH moved AS (
            DELETE FROM \(table.name) WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM \(table.name) WHERE \(table.timeColumn) < $1::timestamptz
                ORDER BY \(table.timeColumn) LIMIT $2 FOR UPDATE SKIP LOCKED))
            RETURNING *),
        archived AS (INSERT INTO \(table.archive) SELECT * FROM moved RETURNING 1),
        counted AS (
            INSERT INTO archive_runs (run_id, table_name, moved) SELECT $3, $4, count(*) FROM archived
            ON CONFLICT (run_id, table_name) DO UPDATE SET moved = archive_runs.moved + EXCLUDED.moved, updated_at = now())
        SELECT count(*) AS n FROM archived
        """
    }

    /// Rows the run moved so far, per table.
    public func moved(run: String, on connection: PostgresConnection) async throws -> [String: Int64] {
        var moved: [String: Int64] = [:]
        for row in try await connection.query("SELECT table_name, moved FROM archive_runs WHERE run_id = $1", [run]).rows {
            moved[try row.string("table_name")] = try row.int64("moved")
        }
        return moved
    }

    /// The live table and its archive read as one, from `since` on, oldest first: one JSON object
    /// per row, with `"archived": true|false`.
    public func show(_ table: ArchiveTable, since: Date, limit: Int, on connection: PostgresConnection) async throws -> [String] {
        try await connection.query("""
            SELECT row FROM (
                SELECT \(table.timeColumn) AS at, id, (to_jsonb(t) || '{"archived": false}')::text AS row
                FROM \(table.name) t WHERE \(table.timeColumn) >= $1::timestamptz
                UNION ALL
                SELECT \(table.timeColumn), id, (to_jsonb(a) || '{"archived": true}')::text
                FROM \(table.archive) a WHERE \(table.timeColumn) >= $1::timestamptz
            ) rows ORDER BY at, id LIMIT $2
            """, [since, limit]).rows.map { try $0.string("row") }
    }
}
