import Foundation
import PayFleetTesting
import Postgres
@testable import Store
import Testing

/// The archive's batch against real PostgreSQL, in a private schema (first on the search path) that
/// holds its own `notifications`, `notifications_archive` and `archive_runs`, so no archive run
/// of another test or worker touches its rows.
@Suite struct ArchiveStoreTests {
    /// After a big archive run and a vacuum, a table's statistics say it is empty while rows older
    /// than the cutoff pile up again. A batch must still move one batch, reading the table a
    /// bounded number of times: counted in rows and buffer reads, not timed.
    @Test func aBatchMovesOneBatchAndReadsTheTableOnceWhenTheStatisticsSayItIsEmpty() async throws {
        let schema = try await PrivateSchema(copying: ["notifications", "notifications_archive", "archive_runs"], poolSize: 2)
        let pool = schema.pool
        try await pool.withConnection { try await $0.execute(simple: "ALTER TABLE notifications SET (autovacuum_enabled = false)") }
        let table = try #require(ArchiveTable.standard.first { $0.name == "notifications" })
        let cutoff = Date().addingTimeInterval(-TimeInterval(table.keepDays) * 86_400)
        // 20,000 rows archived and vacuumed away (the statistics now say 0 rows), then 6,000 rows
        // older than the cutoff.
        try await pool.withConnection { connection in
            try await connection.execute(simple: """
                INSERT INTO notifications (event_id, merchant_id, event_type, resource_key, body, created_at)
                SELECT 'old' || g, 'm', 't', 'r', '{}', now() - interval '40 days' FROM generate_series(1, 20000) AS g;
                DELETE FROM notifications
                """)
            try await connection.execute(simple: "VACUUM (ANALYZE, TRUNCATE false) notifications")
        }
        _ = try await pool.query("""
            INSERT INTO notifications (event_id, merchant_id, event_type, resource_key, body, created_at)
            SELECT 'e' || g, 'm', 't', 'r', '{}', now() - interval '40 days' + g * interval '1 second' FROM generate_series(1, 6000) AS g
            """, [])
        let pages = try await pool.query("SELECT (pg_total_relation_size('notifications') / 8192)::bigint AS pages", []).rows[0].int("pages")

        let buffers = try await schema.buffersRead(ArchiveStore.moveSQL(table), [cutoff, table.batch, "explain", table.name])
        // A few reads per row moved, per row version the table holds (up to 26,000, while a
        // transaction elsewhere keeps the vacuum from freeing the deleted ones) and per page. The
        // old statement read 18,237,988 buffers here (measured): its locking subquery ran once per row.
        #expect(buffers <= 20 * table.batch + 2 * 26_000 + 20 * pages, "the batch read \(buffers) buffers of a \(pages)-page table")

        // One batch moves one batch, the oldest rows, and counts them; the old statement moved all 6,000.
        let store = ArchiveStore()
        #expect(try await store.moveBatch(table, olderThan: cutoff, run: "r1", pool: pool) == table.batch)
        let left = try await pool.query("SELECT count(*) AS n FROM notifications", []).rows[0]
        #expect(try left.int("n") == 6_000 - table.batch)
        let archived = try await pool.query("""
            SELECT count(*) AS n, bool_and(substr(event_id, 2)::int <= $1) AS oldest FROM notifications_archive
            """, [table.batch]).rows[0]
        #expect(try archived.int("n") == table.batch)
        #expect(try archived.bool("oldest"), "the oldest rows went first")
        let counted = try await pool.withConnection { try await store.moved(run: "r1", on: $0) }
        #expect(counted == ["notifications": Int64(table.batch)])
        // The rest, batch by batch, then nothing.
        var total = table.batch
        while true {
            let moved = try await store.moveBatch(table, olderThan: cutoff, run: "r1", pool: pool)
            #expect(moved <= table.batch)
            total += moved
            if moved == 0 { break }
        }
        #expect(total == 6_000)
        await schema.drop()
    }
}
