import Contract
import Fleet
import Foundation
import PaymentServices
import Payments
import Postgres
import Store

/// `payment.refund`: give (part of) a succeeded payment back.
///
/// Partial and repeated refunds, never above what was captured minus what was already refunded
/// (`invalid_state`). The payment becomes `partially_refunded` or `refunded` and its
/// `refunded_amount` grows; a `refunds` row records it. The channel call is keyed by the refund
/// command (`pay_…:refund:<key>`). The amount goes back to the limit windows that counted the
/// payment, if they are still current (RULES), in Redis and in the durable record.
public struct RefundHandler: CommandHandler {
    public let commandType = "payment.refund"
    let context: PaymentContext
    let payments = PaymentStore()
    let orders = OrderBook()

    init(context: PaymentContext) { self.context = context }

    public func locks(_ command: Command<RefundRequest>) -> [PostgresStatement] {
        [LimitRecord.sharedLock(merchantId: command.merchantId)]
    }

    public func parse(_ data: JSONValue) -> Result<RefundRequest, ValidationFailure> { RefundRequest.parse(data) }

    public func handle(_ command: Command<RefundRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let request = command.payload
        guard let stored = try await payments.load(paymentNo: request.paymentNo, merchantId: command.merchantId, lock: true, on: tx) else {
            return .rejected(code: "not_found", message: "no payment \(request.paymentNo)")
        }
        let before = stored.payment
        guard before.status == .succeeded || before.status == .partiallyRefunded else {
            return .rejected(code: "invalid_state", message: "\(before.paymentNo) is \(before.status.rawValue): only a succeeded payment is refunded")
        }
        let refundable = before.amount - before.refundedAmount
        let amount = request.amount ?? refundable
        guard amount <= refundable else {
            return .rejected(code: "invalid_state", message: "a refund of \(amount) exceeds the \(refundable) still refundable")
        }
        guard let channel = before.channel else { throw StoreError.corrupt("payment \(before.paymentNo) has no channel") }
        let answer = try await context.channels.call(ChannelRequest(
            channel: channel, operation: .refund, idempotencyKey: ChannelKeys.refund(before.paymentNo, commandKey: command.idempotencyKey),
            amount: amount, currency: before.currency, resource: before.paymentNo))
        let reference: String
        switch ChannelAnswers.settle(answer, at: channel, doing: "refund", command: command) {
        case .moved(let ref): reference = ref
        case .stopped(let outcome): return outcome
        }

        let now = context.clock.now
        var after = stored
        after.payment.refundedAmount += amount
        after.payment.status = try before.status.transition(to: after.payment.refundedAmount == before.amount ? .refunded : .partiallyRefunded)
        after.payment.version += 1
        after.payment.updatedAt = Timestamp.format(now)
        guard try await payments.update(after, at: now, on: tx) else { throw ConcurrentChange(resource: before.paymentNo) }

        let refundBase = BaseShare.slice(from: before.refundedAmount, to: after.payment.refundedAmount, of: before.amount,
                                         base: stored.amountBase)
        try await context.ledger.refundReturn(merchantId: before.merchantId, refundKey: command.idempotencyKey, amount: refundBase,
                                              paymentWindows: LimitWindows(at: stored.countedAt), windows: LimitWindows(at: now))
        let refundNo = Identifiers.refundNo(merchantId: before.merchantId, idempotencyKey: command.idempotencyKey)
        let order = try await orders.update(of: before, at: now, on: tx) { $0.refunded(amount) }
        return .done([Event(type: after.payment.status.eventType, merchantId: before.merchantId, resourceKey: "payment:\(before.paymentNo)",
                            data: after.payment)] + order.events,
                     effects: [RefundStore.insert(refundNo: refundNo, payment: stored, amount: amount, amountBase: refundBase,
                                                  reason: request.reason, channelRef: reference, commandId: command.id, at: now),
                               LimitRecord.entry(.refund, merchantId: before.merchantId, limitKey: stored.limitKey,
                                                 countedAt: stored.countedAt, amount: refundBase, at: now, ref: refundNo)] + order.effects)
    }
}
