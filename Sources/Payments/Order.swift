import Contract
import Foundation

/// An order's state (RULES "Payments and pre-authorizations"): `created` -> `paid` ->
/// `partially_refunded` | `refunded`; `created` -> `cancelled` when its pending payment times out.
public enum OrderStatus: String, Sendable, Codable, CaseIterable {
    case created, paid, cancelled
    case partiallyRefunded = "partially_refunded"
    case refunded

    /// Whether a new payment or pre-authorization may be made for it; if not, the failure code.
    public var refusal: FailureCode? {
        switch self {
        case .created: nil
        case .paid, .partiallyRefunded, .refunded: .orderAlreadyPaid
        case .cancelled: .orderCancelled
        }
    }
}

/// An order (CONTRACT §3): one per merchant and `order_no`, made by its first payment or
/// pre-authorization. Its status follows from what its payments took and gave back, so it is
/// changed only through the methods below, each of which bumps `version` when something changed.
public struct Order: Sendable, Equatable, Codable {
    public var orderNo: String
    public var merchantId: String
    public var amount: Int64
    public var currency: Currency
    public var status: OrderStatus
    /// Its payments' numbers, in the order they were made (failed attempts included).
    public var payments: [String]
    public var version: Int
    public var createdAt: String
    public var updatedAt: String
    /// What its payments took (captures included) and what was refunded of it, in `currency`.
    public var paidAmount: Int64
    public var refundedAmount: Int64

    enum CodingKeys: String, CodingKey {
        case orderNo = "order_no", merchantId = "merchant_id", amount, currency, status, payments, version
        case createdAt = "created_at", updatedAt = "updated_at"
    }

    public init(orderNo: String, merchantId: String, amount: Int64, currency: Currency, status: OrderStatus = .created,
                payments: [String] = [], version: Int = 1, createdAt: String, updatedAt: String,
                paidAmount: Int64 = 0, refundedAmount: Int64 = 0) {
        self.orderNo = orderNo
        self.merchantId = merchantId
        self.amount = amount
        self.currency = currency
        self.status = status
        self.payments = payments
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.paidAmount = paidAmount
        self.refundedAmount = refundedAmount
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        orderNo = try container.decode(String.self, forKey: .orderNo)
        merchantId = try container.decode(String.self, forKey: .merchantId)
        amount = try container.decode(Int64.self, forKey: .amount)
        currency = try container.decode(Currency.self, forKey: .currency)
        status = try container.decode(OrderStatus.self, forKey: .status)
        payments = try container.decode([String].self, forKey: .payments)
        version = try container.decode(Int.self, forKey: .version)
        createdAt = try container.decode(String.self, forKey: .createdAt)
        updatedAt = try container.decode(String.self, forKey: .updatedAt)
        paidAmount = 0
        refundedAmount = 0
    }

    /// A new payment attempt (or a capture) of this order. While the order is unpaid, a new
    /// attempt names what it now costs (the customer may retry with another amount).
    public mutating func attempt(_ paymentNo: String, amount: Int64, currency: Currency) {
        guard !payments.contains(paymentNo) else { return }
        payments.append(paymentNo)
        if status == .created, paidAmount == 0 {
            self.amount = amount
            self.currency = currency
        }
    }

    /// Records that one of its payments took `amount` (it succeeded, or a capture was made).
    public mutating func paid(_ amount: Int64) {
        paidAmount += amount
        derive()
    }

    /// Records a refund of `amount` of one of its payments.
    public mutating func refunded(_ amount: Int64) {
        refundedAmount += amount
        derive()
    }

    /// Its pending payment timed out: an order nothing was paid for is cancelled.
    public mutating func cancel() {
        if status == .created, paidAmount == 0 { status = .cancelled }
    }

    /// Money wins over every other state: an order with money taken is paid (or refunded), even
    /// one cancelled earlier whose late payment the channel then confirmed.
    mutating func derive() {
        guard paidAmount > 0 else { return }
        status = refundedAmount == 0 ? .paid : refundedAmount >= paidAmount ? .refunded : .partiallyRefunded
    }

    /// The order to write, with its version and `updated_at` moved on, when it differs from
    /// `before` or `before` was never written (version 0: made in this transaction); else nil.
    public func changed(from before: Order, at time: Date) -> Order? {
        guard before.version == 0 || self != before else { return nil }
        var after = self
        after.version = before.version + 1
        after.updatedAt = Timestamp.format(time)
        return after
    }

    /// The event that announces a change (CONTRACT: `order.updated`).
    public static let eventType = "order.updated"
    public var resourceKey: String { "order:\(merchantId):\(orderNo)" }
}
