import Contract
import Foundation
import Payments
import Postgres

/// A payment as stored: the CONTRACT resource plus what the workers keep beside it.
public struct StoredPayment: Sendable, Equatable {
    public var payment: Payment
    /// The amount in the merchant's base currency, as its limits counted it.
    public var amountBase: Int64
    /// The limit reservation's key, and the time whose windows counted it.
    public var limitKey: String
    public var countedAt: Date
    public var channelRef: String?
    /// What is known of the payment at its channel when that differs from `status` (`unknown`: the
    /// channel did not answer).
    public var channelState: String?
    public var customer: Customer?
    public var createdAt: Date
    /// `payment.routing` already encoded (`CanonicalJSON`), when the caller has it: the pin's text.
    public var routingText: String?

    public init(payment: Payment, amountBase: Int64, limitKey: String, countedAt: Date, channelRef: String? = nil,
                channelState: String? = nil, customer: Customer? = nil, createdAt: Date, routingText: String? = nil) {
        self.payment = payment
        self.amountBase = amountBase
        self.limitKey = limitKey
        self.countedAt = countedAt
        self.channelRef = channelRef
        self.channelState = channelState
        self.customer = customer
        self.createdAt = createdAt
        self.routingText = routingText
    }
}

/// Payments in PostgreSQL. Every change bumps `version` by one, under a conditional update on the
/// version read; rows are read back as the CONTRACT resource.
public struct PaymentStore: Sendable {
    public init() {}

    static let columns = """
        payment_no, merchant_id, order_no, amount, amount_base, currency, country, pay_method, channel, channel_ref, channel_state,
        routing::text AS routing, channel_fee, status, failure_code, failure_message, refunded_amount, pre_auth_no, subject,
        metadata::text AS metadata, customer::text AS customer, limit_key, counted_at, version, created_at, updated_at
        """

    /// The statement that inserts a new payment created by command `commandId`.
    public func insert(_ stored: StoredPayment, commandId: String) throws -> PostgresStatement {
        let payment = stored.payment
        return PostgresStatement("""
            INSERT INTO payments (payment_no, merchant_id, order_no, amount, amount_base, currency, country, pay_method,
                channel, channel_ref, routing, channel_fee, status, failure_code, failure_message, subject, metadata,
                customer, command_id, version, created_at, updated_at, limit_key, counted_at, channel_state, pre_auth_no, succeeded_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16, $17::jsonb,
                $18::jsonb, $19, $20, $21::timestamptz, $21::timestamptz, $22, $23::timestamptz, $24, $25,
                CASE WHEN $13 = 'succeeded' THEN $21::timestamptz END)
            """, [payment.paymentNo, payment.merchantId, payment.orderNo, payment.amount, stored.amountBase,
                  payment.currency.rawValue, payment.country, payment.payMethod.rawValue, payment.channel, stored.channelRef,
                  try stored.routingText ?? payment.routing.map(CanonicalJSON.encode), payment.channelFee, payment.status.rawValue,
                  payment.failureCode, payment.failureMessage, payment.subject, try CanonicalJSON.encode(payment.metadata),
                  try stored.customer.map(CanonicalJSON.encode), commandId, payment.version, stored.createdAt,
                  stored.limitKey, stored.countedAt, stored.channelState, payment.preAuthNo])
    }

    /// One payment, only if it belongs to `merchantId` (another merchant's payment is "not found").
    public func find(paymentNo: String, merchantId: String, on connection: PostgresConnection) async throws -> Payment? {
        try await load(paymentNo: paymentNo, merchantId: merchantId, on: connection)?.payment
    }

    /// Payments of one merchant among `paymentNos`, in one query (another merchant's are not found).
    public func find(paymentNos: [String], merchantId: String, on connection: PostgresConnection) async throws -> [Payment] {
        try await connection.query("SELECT \(Self.columns) FROM payments WHERE merchant_id = $1 AND payment_no = ANY($2::text[])",
                                   [merchantId, PostgresArray.text(paymentNos)]).rows.map { try Self.stored(from: $0).payment }
    }

    /// One payment with what is stored beside it. `lock`: take the row for this transaction
    /// (`FOR UPDATE`), so that commands changing the same payment take turns.
    public func load(paymentNo: String, merchantId: String, lock: Bool = false,
                     on connection: PostgresConnection) async throws -> StoredPayment? {
        try await connection.query("""
            SELECT \(Self.columns) FROM payments WHERE payment_no = $1 AND merchant_id = $2\(lock ? " FOR UPDATE" : "")
            """, [paymentNo, merchantId]).first.map(Self.stored(from:))
    }

    /// Writes a change of `after` (read at version `after.payment.version - 1`): one conditional
    /// update on that version. Returns false, changing nothing, when another change came first.
    public func update(_ after: StoredPayment, at time: Date, on connection: PostgresConnection) async throws -> Bool {
        let payment = after.payment
        return try await connection.query("""
            UPDATE payments SET status = $3, failure_code = $4, failure_message = $5, refunded_amount = $6, channel_ref = $7,
                channel_state = $8, channel_fee = $9, version = $10, updated_at = $11::timestamptz,
                succeeded_at = CASE WHEN succeeded_at IS NULL AND $3 = 'succeeded' THEN $11::timestamptz ELSE succeeded_at END
            WHERE payment_no = $1 AND merchant_id = $2 AND version = $10 - 1
            """, [payment.paymentNo, payment.merchantId, payment.status.rawValue, payment.failureCode, payment.failureMessage,
                  payment.refundedAmount, after.channelRef, after.channelState, payment.channelFee, payment.version, time]).affectedRows == 1
    }

    /// Pending payments created before `cutoff` (the timeout sweep), by number after `after`, at
    /// most `limit`; of one merchant when `merchantId` is given.
    public func duePending(createdBefore cutoff: Date, merchantId: String?, after: String?, limit: Int,
                           on connection: PostgresConnection) async throws -> [(paymentNo: String, merchantId: String)] {
        try await connection.query("""
            SELECT payment_no, merchant_id FROM payments
            WHERE status = 'pending' AND created_at <= $1::timestamptz AND ($2::text IS NULL OR merchant_id = $2)
              AND ($3::text IS NULL OR payment_no > $3)
            ORDER BY payment_no LIMIT $4
            """, [cutoff, merchantId, after, limit]).rows.map { (try $0.string("payment_no"), try $0.string("merchant_id")) }
    }

    /// The merchant a payment belongs to (a channel's notify names only the payment).
    public func owner(paymentNo: String, on connection: PostgresConnection) async throws -> (merchantId: String, channel: String?)? {
        try await connection.query("SELECT merchant_id, channel FROM payments WHERE payment_no = $1", [paymentNo]).first
            .map { (try $0.string("merchant_id"), try $0.optionalString("channel")) }
    }

    static func stored(from row: PostgresRow) throws -> StoredPayment {
        let paymentNo = try row.string("payment_no")
        guard let currency = Currency(rawValue: try row.string("currency")),
              let payMethod = PayMethod(rawValue: try row.string("pay_method")),
              let status = PaymentStatus(rawValue: try row.string("status")) else {
            throw StoreError.corrupt("payment \(paymentNo)")
        }
        let request = PaymentRequest(orderNo: try row.string("order_no"), amount: try row.int64("amount"),
                                     currency: currency, country: try row.string("country"), payMethod: payMethod,
                                     subject: try row.optionalString("subject"),
                                     metadata: try CanonicalJSON.decode([String: String].self, from: try row.string("metadata")))
        let createdAt = try row.date("created_at")
        var payment = Payment(paymentNo: paymentNo, merchantId: try row.string("merchant_id"), request: request,
                              status: status, channel: try row.optionalString("channel"),
                              routing: try row.optionalString("routing").map { try CanonicalJSON.decode(RoutingDecision.self, from: $0) },
                              channelFee: try row.int64("channel_fee"), failureCode: try row.optionalString("failure_code"),
                              failureMessage: try row.optionalString("failure_message"), version: try row.int("version"),
                              at: createdAt)
        payment.refundedAmount = try row.int64("refunded_amount")
        payment.preAuthNo = try row.optionalString("pre_auth_no")
        payment.updatedAt = Timestamp.format(try row.date("updated_at"))
        return StoredPayment(payment: payment, amountBase: try row.optionalInt64("amount_base") ?? payment.amount,
                             limitKey: try row.optionalString("limit_key") ?? paymentNo, countedAt: try row.date("counted_at"),
                             channelRef: try row.optionalString("channel_ref"), channelState: try row.optionalString("channel_state"),
                             customer: try row.optionalString("customer").map { try CanonicalJSON.decode(Customer.self, from: $0) },
                             createdAt: createdAt)
    }
}

/// Refunds of payments (one row per refund command), for the merchant's books and settlement.
public enum RefundStore {
    public static func insert(refundNo: String, payment: StoredPayment, amount: Int64, amountBase: Int64, reason: String?,
                              channelRef: String?, commandId: String, at time: Date) -> PostgresStatement {
        PostgresStatement("""
            INSERT INTO refunds (refund_no, payment_no, merchant_id, amount, amount_base, currency, reason, channel_ref, command_id, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::timestamptz)
            """, [refundNo, payment.payment.paymentNo, payment.payment.merchantId, amount, amountBase,
                  payment.payment.currency.rawValue, reason, channelRef, commandId, time])
    }
}

/// Channels' asynchronous results, kept raw as received once their signature checked out.
public enum CallbackStore {
    public static func insert(channel: String, paymentNo: String?, body: String, on connection: PostgresConnection) async throws {
        _ = try await connection.query("INSERT INTO payment_callbacks (channel, payment_no, body) VALUES ($1, $2, $3)",
                                       [channel, paymentNo, body])
    }
}
