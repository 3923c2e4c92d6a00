import Contract
import Foundation
import Payments
import Postgres

/// Orders in PostgreSQL. A payment change that moves an order holds its row (`FOR UPDATE`) from
/// the start of its transaction, so the payments of one order take turns, and writes the change
/// with its own effects.
public struct OrderStore: Sendable {
    public init() {}

    static let columns = """
        order_no, merchant_id, amount, currency, status, paid_amount, refunded_amount, array_to_json(payments)::text AS payments,
        version, created_at, updated_at
        """

    /// The order, held for this transaction; made (`created`, no payments yet, version 0 so that
    /// its first write is version 1) when it does not exist. One round trip either way.
    public func hold(merchantId: String, orderNo: String, amount: Int64, currency: Currency, at time: Date,
                     on connection: PostgresConnection) async throws -> (order: Order, isNew: Bool) {
        // A new order's row is ours once inserted; an existing one is read held.
        if let row = try await connection.query("""
            INSERT INTO orders (merchant_id, order_no, amount, currency, status, version, created_at, updated_at)
            VALUES ($1, $2, $3, $4, 'created', 0, $5::timestamptz, $5::timestamptz)
            ON CONFLICT (merchant_id, order_no) DO NOTHING
            RETURNING \(Self.columns)
            """, [merchantId, orderNo, amount, currency.rawValue, time]).first {
            return (try Self.order(from: row), true)
        }
        guard let order = try await load(merchantId: merchantId, orderNo: orderNo, lock: true, on: connection) else {
            throw StoreError.corrupt("order \(orderNo) vanished")
        }
        return (order, false)
    }

    public func load(merchantId: String, orderNo: String, lock: Bool = false, on connection: PostgresConnection) async throws -> Order? {
        try await connection.query("""
            SELECT \(Self.columns) FROM orders WHERE merchant_id = $1 AND order_no = $2\(lock ? " FOR UPDATE" : "")
            """, [merchantId, orderNo]).first.map(Self.order(from:))
    }

    /// Orders of one merchant among `orderNos`, in one query.
    public func find(merchantId: String, orderNos: [String], on connection: PostgresConnection) async throws -> [Order] {
        try await connection.query("SELECT \(Self.columns) FROM orders WHERE merchant_id = $1 AND order_no = ANY($2::text[])",
                                   [merchantId, PostgresArray.text(orderNos)]).rows.map(Self.order(from:))
    }

    /// The statement that writes `order` (whose `version` is the new one). Its `updated_at` goes as
    /// the text `Order.changed` wrote (`Timestamp.format`), which PostgreSQL reads as it is.
    public func write(_ order: Order) -> PostgresStatement {
        PostgresStatement("""
            UPDATE orders SET amount = $3, currency = $4, status = $5, paid_amount = $6, refunded_amount = $7,
                payments = $8::text[], version = $9, updated_at = $10::timestamptz
            WHERE merchant_id = $1 AND order_no = $2
            """, [order.merchantId, order.orderNo, order.amount, order.currency.rawValue, order.status.rawValue, order.paidAmount,
                  order.refundedAmount, PostgresArray.text(order.payments), order.version, order.updatedAt])
    }

    static func order(from row: PostgresRow) throws -> Order {
        let orderNo = try row.string("order_no")
        guard let currency = Currency(rawValue: try row.string("currency")),
              let status = OrderStatus(rawValue: try row.string("status")) else {
            throw StoreError.corrupt("order \(orderNo)")
        }
        // A new order has no payment yet: its empty list needs no JSON decoder.
        let payments = try row.string("payments")
        return Order(orderNo: orderNo, merchantId: try row.string("merchant_id"), amount: try row.int64("amount"), currency: currency,
                     status: status, payments: payments == "[]" ? [] : try CanonicalJSON.decode([String].self, from: payments),
                     version: try row.int("version"), createdAt: Timestamp.format(try row.date("created_at")),
                     updatedAt: Timestamp.format(try row.date("updated_at")), paidAmount: try row.int64("paid_amount"),
                     refundedAmount: try row.int64("refunded_amount"))
    }
}
