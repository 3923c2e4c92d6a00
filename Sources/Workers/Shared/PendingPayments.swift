import Contract
import Fleet
import Foundation
import PaymentServices
import Payments
import Postgres
import Store

/// Ends a pending payment: what a channel's `notify` (`payment.complete`) and the timeout sweep
/// (`payment.timeout`) share. The caller holds the payment's row (`FOR UPDATE`) and the merchant's
/// limit lock shared, so a competing end waits and then sees the payment no longer pending.
struct PendingPayments: Sendable {
    let context: PaymentContext
    let payments = PaymentStore()
    let orders = OrderBook()

    /// The channel took the money: the reservation is committed, and the payment succeeds.
    func succeed<P>(_ stored: StoredPayment, reference: String?, command: Command<P>, on tx: PostgresConnection) async throws -> Outcome {
        let now = context.clock.now
        var after = stored
        after.payment.status = try stored.payment.status.transition(to: .succeeded)
        after.payment.version += 1
        after.payment.updatedAt = Timestamp.format(now)
        after.channelRef = reference ?? stored.channelRef
        after.channelState = nil
        // Counted since it went pending; commit marks it captured, so no release gives it back.
        _ = try await context.ledger.commit(merchantId: stored.payment.merchantId, reservationKey: stored.limitKey,
                                            amount: stored.amountBase)
        guard try await payments.update(after, at: now, on: tx) else { throw ConcurrentChange(resource: stored.payment.paymentNo) }
        let order = try await orders.update(of: after.payment, at: now, on: tx) { $0.paid(after.payment.amount) }
        return .done([event(after.payment)] + order.events, effects: order.effects)
    }

    /// The payment ends without the money: `failed` (the channel said so) or `cancelled` (timed
    /// out). What it reserved is given back, in Redis and in the durable record.
    func end<P>(_ stored: StoredPayment, as status: PaymentStatus, failure: FailureCode, message: String, command: Command<P>,
                on tx: PostgresConnection) async throws -> Outcome {
        let now = context.clock.now
        var after = stored
        after.payment.status = try stored.payment.status.transition(to: status)
        after.payment.failureCode = failure.rawValue
        after.payment.failureMessage = message
        after.payment.version += 1
        after.payment.updatedAt = Timestamp.format(now)
        try await context.ledger.release(merchantId: stored.payment.merchantId, reservationKey: stored.limitKey,
                                         windows: LimitWindows(at: now), recorded: (stored.amountBase, stored.countedAt))
        guard try await payments.update(after, at: now, on: tx) else { throw ConcurrentChange(resource: stored.payment.paymentNo) }
        let entry = LimitRecord.entry(.release, merchantId: stored.payment.merchantId, limitKey: stored.limitKey,
                                      countedAt: stored.countedAt, amount: stored.amountBase, at: now, ref: stored.payment.paymentNo)
        // A timed-out payment cancels its unpaid order; a failed one leaves it open for another try.
        let order = status == .cancelled ? try await orders.update(of: after.payment, at: now, on: tx) { $0.cancel() } : OrderChange()
        return .done([event(after.payment)] + order.events, effects: [entry] + order.effects)
    }

    func event(_ payment: Payment) -> Event {
        Event(type: payment.status.eventType, merchantId: payment.merchantId, resourceKey: "payment:\(payment.paymentNo)", data: payment)
    }
}

/// A conditional update found the resource changed by another command: roll back and retry.
struct ConcurrentChange: Error, CustomStringConvertible {
    let resource: String
    var description: String { "\(resource) changed concurrently" }
}
