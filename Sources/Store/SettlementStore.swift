import Contract
import Foundation
import Payments
import Postgres

/// Settlements and the payments and refunds they hold. A settlement is created in one
/// transaction with the stamps (`settlement_id`) of every line it counts, so a rerun finds
/// nothing left to count and a later settlement can never count a line twice.
public struct SettlementStore: Sendable {
    public init() {}

    /// What one currency of a merchant's day holds, not yet settled.
    public struct DayTotals: Sendable, Equatable {
        public var currency: String
        public var payments: Int64 = 0
        public var paymentCount = 0
        public var refunds: Int64 = 0
        public var refundCount = 0
    }

    /// Merchants with auto-settlement on, by id after `after`, at most `limit`.
    public func autoSettled(after: String?, limit: Int, on connection: PostgresConnection) async throws -> [String] {
        try await connection.query("""
            SELECT merchant_id FROM merchants WHERE auto_settlement AND merchant_id > COALESCE($1::text, '')
            ORDER BY merchant_id LIMIT $2
            """, [after, limit]).rows.map { try $0.string("merchant_id") }
    }

    /// The unsettled payments (by the time their money was taken) and refunds of `day`, per currency.
    public func totals(merchantId: String, day: UTCDay, on connection: PostgresConnection) async throws -> [DayTotals] {
        let rows = try await connection.query("""
            SELECT 'payment' AS kind, currency, sum(amount)::bigint AS total, count(*) AS n FROM payments
            WHERE merchant_id = $1 AND settlement_id IS NULL AND succeeded_at >= $2::timestamptz AND succeeded_at < $3::timestamptz
            GROUP BY currency
            UNION ALL
            SELECT 'refund', currency, sum(amount)::bigint, count(*) FROM refunds
            WHERE merchant_id = $1 AND settlement_id IS NULL AND created_at >= $2::timestamptz AND created_at < $3::timestamptz
            GROUP BY currency
            """, [merchantId, day.start, day.end]).rows
        var byCurrency: [String: DayTotals] = [:]
        for row in rows {
            let currency = try row.string("currency")
            var totals = byCurrency[currency] ?? DayTotals(currency: currency)
            if try row.string("kind") == "payment" {
                totals.payments = try row.int64("total")
                totals.paymentCount = try row.int("n")
            } else {
                totals.refunds = try row.int64("total")
                totals.refundCount = try row.int("n")
            }
            byCurrency[currency] = totals
        }
        return byCurrency.values.sorted { $0.currency < $1.currency }
    }

    /// Creates `settlement` and stamps its lines; throws if the stamps do not match what was counted
    /// (the caller holds the merchant's lock, so they always do).
    public func create(_ settlement: Settlement, day: UTCDay, counted: DayTotals, on connection: PostgresConnection) async throws {
        _ = try await connection.query("""
            INSERT INTO settlements (settlement_id, merchant_id, currency, day, gross, fee, net, fee_bps, payout_date, payment_count,
                refund_count, created_at)
            VALUES ($1, $2, $3, $4::date, $5, $6, $7, $8, $9::date, $10, $11, $12::timestamptz)
            """, [settlement.settlementId, settlement.merchantId, settlement.currency, settlement.date, settlement.gross, settlement.fee,
                  settlement.net, settlement.feeBps, settlement.payoutDate, settlement.paymentCount, settlement.refundCount,
                  Timestamp.parse(settlement.createdAt) ?? Date()])
        let results = try await connection.batch([
            PostgresStatement("""
                UPDATE payments SET settlement_id = $4 WHERE merchant_id = $1 AND currency = $5 AND settlement_id IS NULL
                  AND succeeded_at >= $2::timestamptz AND succeeded_at < $3::timestamptz
                """, [settlement.merchantId, day.start, day.end, settlement.settlementId, settlement.currency]),
            PostgresStatement("""
                UPDATE refunds SET settlement_id = $4 WHERE merchant_id = $1 AND currency = $5 AND settlement_id IS NULL
                  AND created_at >= $2::timestamptz AND created_at < $3::timestamptz
                """, [settlement.merchantId, day.start, day.end, settlement.settlementId, settlement.currency]),
        ])
        guard results[0].affectedRows == counted.paymentCount, results[1].affectedRows == counted.refundCount else {
            throw StoreError.corrupt("settlement \(settlement.settlementId) counted \(counted.paymentCount)+\(counted.refundCount) lines "
                                     + "but stamped \(results[0].affectedRows)+\(results[1].affectedRows)")
        }
    }

    public func find(settlementId: String, merchantId: String, on connection: PostgresConnection) async throws -> Settlement? {
        try await connection.query("SELECT \(Self.columns) FROM settlements WHERE settlement_id = $1 AND merchant_id = $2",
                                   [settlementId, merchantId]).first.map(Self.settlement(from:))
    }

    /// Newest day first; `from`/`to` bound the day (both included); the cursor is the last
    /// (day, id) handed out.
    public func list(merchantId: String, from: UTCDay?, to: UTCDay?, currency: String?, cursor: String?, limit: Int,
                     on connection: PostgresConnection) async throws -> Page<Settlement> {
        var after: (day: String, id: String)?
        if let cursor {
            let parts = cursor.split(separator: "|", maxSplits: 1).map(String.init)
            guard parts.count == 2, UTCDay(parts[0]) != nil, parts[1].hasPrefix("stl_") else { throw InvalidCursor() }
            after = (parts[0], parts[1])
        }
        let rows = try await connection.query("""
            SELECT \(Self.columns) FROM settlements
            WHERE merchant_id = $1 AND day >= COALESCE($2::date, '-infinity') AND day <= COALESCE($3::date, 'infinity')
              AND ($4::text IS NULL OR currency = $4)
              AND (day, settlement_id) < (COALESCE($5::date, 'infinity'), COALESCE($6::text, ''))
            ORDER BY day DESC, settlement_id DESC LIMIT $7
            """, [merchantId, from?.description, to?.description, currency, after?.day, after?.id, limit + 1]).rows
        let items = try rows.prefix(limit).map(Self.settlement(from:))
        let next = rows.count > limit ? items.last.map { "\($0.date)|\($0.settlementId)" } : nil
        return Page(items: items, nextCursor: next)
    }

    /// A settlement's payments and refunds, oldest first; the cursor is the last (time, kind, number).
    public func lines(settlementId: String, cursor: String?, limit: Int, on connection: PostgresConnection) async throws
        -> Page<SettlementLine> {
        // The cursor carries PostgreSQL's own text of the time, exact to the microsecond.
        var after: (time: String, key: String)?
        if let cursor {
            let parts = cursor.split(separator: "|", maxSplits: 1).map(String.init)
            guard parts.count == 2, parts[0].count <= 40, parts[0].first?.isNumber == true,
                  parts[0].allSatisfy({ $0.isASCII && ($0.isNumber || "-:. +".contains($0)) }) else { throw InvalidCursor() }
            after = (parts[0], parts[1])
        }
        let rows = try await connection.query("""
            SELECT *, at::text AS at_text FROM (
                SELECT 'payment' AS kind, payment_no, NULL::text AS refund_no, amount, currency, succeeded_at AS at,
                       'payment|' || payment_no AS key
                FROM payments WHERE settlement_id = $1
                UNION ALL
                SELECT 'refund', payment_no, refund_no, amount, currency, created_at, 'refund|' || refund_no FROM refunds WHERE settlement_id = $1
            ) lines
            WHERE $2::timestamptz IS NULL OR (at, key) > ($2::timestamptz, $3::text)
            ORDER BY at, key LIMIT $4
            """, [settlementId, after?.time, after?.key, limit + 1]).rows
        let items = try rows.prefix(limit).map { row in
            SettlementLine(kind: try row.string("kind"), paymentNo: try row.string("payment_no"), refundNo: try row.optionalString("refund_no"),
                           amount: try row.int64("amount"), currency: try row.string("currency"),
                           createdAt: Timestamp.format(try row.date("at")))
        }
        var next: String?
        if rows.count > limit, let last = rows.prefix(limit).last {
            next = "\(try last.string("at_text"))|\(try last.string("key"))"
        }
        return Page(items: items, nextCursor: next)
    }

    /// A cursor this store did not hand out.
    public struct InvalidCursor: Error {}

    static let columns = """
        settlement_id, merchant_id, currency, to_char(day, 'YYYY-MM-DD') AS day, gross, fee, net, fee_bps,
        to_char(payout_date, 'YYYY-MM-DD') AS payout_date, payment_count, refund_count, created_at
        """

    static func settlement(from row: PostgresRow) throws -> Settlement {
        Settlement(settlementId: try row.string("settlement_id"), merchantId: try row.string("merchant_id"),
                   currency: try row.string("currency"), date: try row.string("day"),
                   figures: SettlementFigures(gross: try row.int64("gross"), fee: try row.int64("fee"), net: try row.int64("net")),
                   feeBps: try row.int64("fee_bps"), payoutDate: try row.string("payout_date"),
                   paymentCount: try row.int("payment_count"), refundCount: try row.int("refund_count"),
                   createdAt: Timestamp.format(try row.date("created_at")))
    }
}
