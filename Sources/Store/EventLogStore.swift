import Foundation
import Postgres

/// The merchant's event log (`notifications`): every merchant event the outbox relay published,
/// as published, in publish order (per resource, the commit order), kept 30 days.
public struct EventLogStore: Sendable {
    public init() {}

    /// Events of `merchantId` after the cursor `after` (an id this log handed out), oldest first,
    /// at most `limit`; filtered by type and by the time they were published.
    public func list(merchantId: String, type: String?, since: Date?, until: Date?, after: Int64?, limit: Int,
                     on connection: PostgresConnection) async throws -> Page<String> {
        let rows = try await connection.query("""
            SELECT id, body FROM notifications
            WHERE merchant_id = $1 AND ($2::text IS NULL OR event_type = $2) AND ($3::timestamptz IS NULL OR created_at >= $3::timestamptz)
              AND ($4::timestamptz IS NULL OR created_at < $4::timestamptz) AND id > COALESCE($5::bigint, 0)
            ORDER BY id LIMIT $6
            """, [merchantId, type, since, until, after, limit + 1]).rows
        let page = rows.prefix(limit)
        let next = rows.count > limit ? try page.last.map { "ev_\(try $0.int64("id"))" } : nil
        return Page(items: try page.map { try $0.string("body") }, nextCursor: next)
    }

    /// The id a cursor names, or nil if it is not one this log handed out.
    public static func cursorId(_ cursor: String) -> Int64? {
        guard cursor.hasPrefix("ev_"), let id = Int64(cursor.dropFirst(3)), id >= 0 else { return nil }
        return id
    }
}
