import Contract
import Fleet
import Foundation
import Payments
import Postgres
import Store

/// How payment changes move their order (RULES "Payments and pre-authorizations"): the change
/// holds the order's row in its transaction, applies what happened to the payment, and writes
/// the order with an `order.updated` event when it changed, in the same commit as the payment.
struct OrderBook: Sendable {
    let orders = OrderStore()

    /// The order `request` pays for, held for this transaction (made `created` if new).
    func hold(merchantId: String, orderNo: String, amount: Int64, currency: Currency, at time: Date,
              on tx: PostgresConnection) async throws -> Order {
        try await orders.hold(merchantId: merchantId, orderNo: orderNo, amount: amount, currency: currency, at: time, on: tx).order
    }

    /// The order of an existing payment, held, changed by `change`; its write and event, if it changed.
    func update(of payment: Payment, at time: Date, on tx: PostgresConnection,
                _ change: (inout Order) -> Void) async throws -> OrderChange {
        let before = try await hold(merchantId: payment.merchantId, orderNo: payment.orderNo, amount: payment.amount,
                                    currency: payment.currency, at: time, on: tx)
        var after = before
        change(&after)
        return record(before, after, at: time)
    }

    /// The write and event of going from `before` to `after` (nothing when it did not change).
    func record(_ before: Order, _ after: Order, at time: Date) -> OrderChange {
        guard let written = after.changed(from: before, at: time) else { return OrderChange() }
        return OrderChange(effects: [orders.write(written)],
                           events: [Event(type: Order.eventType, merchantId: written.merchantId, resourceKey: written.resourceKey, data: written)])
    }
}

/// An order's part of a payment change's outcome.
struct OrderChange: Sendable {
    var effects: [PostgresStatement] = []
    var events: [Event] = []
}
