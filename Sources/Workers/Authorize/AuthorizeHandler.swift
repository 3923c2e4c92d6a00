import Contract
import Fleet
import Foundation
import PaymentServices
import Payments
import Postgres
import Store

/// `payment.create`: validate, check and reserve the merchant's limits, route to a channel, charge
/// it, and persist the payment with its outcome event.
///
/// The shared steps (`Authorization`) make it exactly once across retries and redeliveries. The
/// channel's answer decides the payment:
/// - succeeded: the reservation is committed; `payment.succeeded`;
/// - pending (`52`): the result comes later through `notify`, or the payment times out;
/// - no answer (`54`): the payment stays pending with its state at the channel `unknown`; the
///   timeout sweep asks the channel and completes it;
/// - declined: released; `payment.failed` with `channel_declined`;
/// - a transient error: rolled back and retried (the reservation stays, the retry finds it); on
///   the final attempt released, `channel_error`.
public struct AuthorizeHandler: CommandHandler {
    public let commandType = "payment.create"
    let steps: Authorization
    let payments = PaymentStore()

    init(steps: Authorization) { self.steps = steps }

    public func locks(_ command: Command<PaymentRequest>) -> [PostgresStatement] {
        [LimitRecord.sharedLock(merchantId: command.merchantId)]
    }

    public func parse(_ data: JSONValue) -> Result<PaymentRequest, ValidationFailure> { PaymentRequest.parse(data) }

    public func handle(_ command: Command<PaymentRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let request = command.payload
        let paymentNo = Identifiers.paymentNo(merchantId: command.merchantId, idempotencyKey: command.idempotencyKey)

        func finish(_ checked: Authorization.Context, _ status: PaymentStatus, fee: Int64 = 0, failure: FailureCode? = nil,
                    message: String? = nil, reference: String? = nil, channelState: String? = nil,
                    effects: [PostgresStatement] = []) throws -> Outcome {
            let payment = Payment(paymentNo: paymentNo, merchantId: checked.merchant.merchantId, request: request, status: status,
                                  channel: checked.decision.channel, routing: checked.decision, channelFee: fee,
                                  failureCode: failure?.rawValue, failureMessage: message, version: 1, at: checked.now)
            let stored = StoredPayment(payment: payment, amountBase: checked.amountBase, limitKey: command.idempotencyKey,
                                       countedAt: checked.countedAt, channelRef: reference, channelState: channelState,
                                       customer: request.customer, createdAt: checked.now, routingText: checked.decisionText)
            let counts = status == .succeeded || status == .pending
            // A failed attempt leaves its order `created`, so the customer can try again.
            var order = checked.order
            order.attempt(paymentNo, amount: request.amount, currency: request.currency)
            if status == .succeeded { order.paid(request.amount) }
            let orderChange = steps.orders.record(checked.order, order, at: checked.now)
            return .done([Event(type: status.eventType, merchantId: payment.merchantId, resourceKey: "payment:\(paymentNo)", data: payment)]
                            + orderChange.events,
                         effects: [try payments.insert(stored, commandId: command.id)] + effects
                            + (counts ? [steps.counted(command, checked, ref: paymentNo)] : []) + orderChange.effects)
        }

        let checked: Authorization.Context, channel: String
        switch try await steps.check(command, request: request, on: tx) {
        case .outcome(let outcome): return outcome
        case .failed(let code, let message, let context, let effects):
            return try finish(context, .failed, failure: code, message: message, effects: effects)
        case .ready(let context, let chosen):
            checked = context
            channel = chosen
        }

        let answer = try await steps.callChannel(channel, request: request, resource: paymentNo, isRetry: checked.isRetry)
        Faults.point("after-channel-call")
        let fee = checked.decision.estimatedFee ?? 0
        // A success records its live outcome together with the commit (one round trip).
        if case .succeeded = answer {} else { try await steps.recordOutcome(channel, answer, at: checked.now) }
        switch answer {
        case .succeeded(let reference):
            try await steps.recordSuccessAndCommit(command, channel: channel, amountBase: checked.amountBase, at: checked.now)
            return try finish(checked, .succeeded, fee: fee, reference: reference)
        case .pending(let reference):
            return try finish(checked, .pending, fee: fee, reference: reference.isEmpty ? nil : reference)
        case .noAnswer:
            return try finish(checked, .pending, fee: fee, channelState: "unknown")
        case .declined(let reason):
            try await steps.release(command)
            return try finish(checked, .failed, failure: .channelDeclined, message: reason)
        case .transientError(let reason) where !command.isFinalAttempt:
            return .retryLater(reason)
        case .transientError:
            try await steps.release(command)
            return try finish(checked, .failed, failure: .channelError, message: "\(channel) kept failing after \(command.attempt) retries")
        }
    }

    /// A parked command gives back what it reserved.
    public func parked(_ command: Command<PaymentRequest>, reason: String) async throws {
        try await steps.release(command)
    }
}
