import Contract
import Foundation
import Payments
import Postgres

/// Payments in PostgreSQL. Every change bumps `version`; rows are read back as the CONTRACT resource.
public struct PaymentStore: Sendable {
    public init() {}

    /// The statement that inserts a new payment created by command `commandId`.
    public func insert(_ payment: Payment, amountBase: Int64?, channelRef: String?, customer: Customer?,
                       commandId: String) throws -> PostgresStatement {
        PostgresStatement("""
            INSERT INTO payments (payment_no, merchant_id, order_no, amount, amount_base, currency, country, pay_method,
                channel, channel_ref, routing, channel_fee, status, failure_code, failure_message, subject, metadata,
                customer, command_id, version, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16, $17::jsonb,
                $18::jsonb, $19, $20, $21::timestamptz, $21::timestamptz)
            """, [payment.paymentNo, payment.merchantId, payment.orderNo, payment.amount, amountBase,
                  payment.currency.rawValue, payment.country, payment.payMethod.rawValue, payment.channel, channelRef,
                  try payment.routing.map(CanonicalJSON.encode), payment.channelFee, payment.status.rawValue,
                  payment.failureCode, payment.failureMessage, payment.subject, try CanonicalJSON.encode(payment.metadata),
                  try customer.map(CanonicalJSON.encode), commandId, payment.version, payment.createdAt])
    }

    /// One payment, only if it belongs to `merchantId` (another merchant's payment is "not found").
    public func find(paymentNo: String, merchantId: String, on connection: PostgresConnection) async throws -> Payment? {
        try await connection.query("""
            SELECT payment_no, merchant_id, order_no, amount, currency, country, pay_method, channel, routing::text AS routing,
                   channel_fee, status, failure_code, failure_message, refunded_amount, pre_auth_no, subject,
                   metadata::text AS metadata, version, created_at, updated_at
            FROM payments WHERE payment_no = $1 AND merchant_id = $2
            """, [paymentNo, merchantId]).first.map(Self.payment(from:))
    }

    static func payment(from row: PostgresRow) throws -> Payment {
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
        var payment = Payment(paymentNo: paymentNo, merchantId: try row.string("merchant_id"), request: request,
                              status: status, channel: try row.optionalString("channel"),
                              routing: try row.optionalString("routing").map { try CanonicalJSON.decode(RoutingDecision.self, from: $0) },
                              channelFee: try row.int64("channel_fee"), failureCode: try row.optionalString("failure_code"),
                              failureMessage: try row.optionalString("failure_message"), version: try row.int("version"),
                              at: try row.date("created_at"))
        payment.refundedAmount = try row.int64("refunded_amount")
        payment.preAuthNo = try row.optionalString("pre_auth_no")
        payment.updatedAt = Timestamp.format(try row.date("updated_at"))
        return payment
    }
}
