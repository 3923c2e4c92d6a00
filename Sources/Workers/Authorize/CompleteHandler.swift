import Contract
import Fleet
import Foundation
import PaymentServices
import Payments
import Postgres
import Store

/// `payment.complete`: a channel's asynchronous result for a payment it left pending (the
/// ingress publishes it after checking the channel's signature on `notify`).
///
/// - pending + succeeded: the reservation is committed; `payment.succeeded`.
/// - pending + failed: it is released; `payment.failed` (`channel_declined`).
/// - A success for a payment that already ended (timed out, failed) is an explicit case, never an
///   exception: the payment stays as it ended, the channel is asked to give the money back (a
///   refund keyed `pay_…:reverse`, so it happens once however often the success is reported),
///   and `payment.reversed` is emitted.
/// - Anything else (a result for a payment that already has that result) changes nothing:
///   `invalid_state`. The same notify twice is a duplicate of one command.
public struct CompleteHandler: CommandHandler {
    public let commandType = "payment.complete"
    /// Sent by the fleet only (the ingress, after checking the channel's signature): a merchant's own broker user may not.
    public let merchantsMaySend = false
    let context: PaymentContext
    let pending: PendingPayments
    let payments = PaymentStore()

    init(context: PaymentContext) {
        self.context = context
        pending = PendingPayments(context: context)
    }

    public func locks(_ command: Command<CompleteRequest>) -> [PostgresStatement] {
        [LimitRecord.sharedLock(merchantId: command.merchantId)]
    }

    public func parse(_ data: JSONValue) -> Result<CompleteRequest, ValidationFailure> { CompleteRequest.parse(data) }

    public func handle(_ command: Command<CompleteRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let request = command.payload
        guard let stored = try await payments.load(paymentNo: request.paymentNo, merchantId: command.merchantId, lock: true, on: tx) else {
            return .rejected(code: "not_found", message: "no payment \(request.paymentNo)")
        }
        switch (stored.payment.status, request.result) {
        case (.pending, .succeeded):
            return try await pending.succeed(stored, reference: request.channelRef, command: command, on: tx)
        case (.pending, .failed):
            return try await pending.end(stored, as: .failed, failure: .channelDeclined,
                                         message: "\(stored.payment.channel ?? "the channel") reported the payment failed",
                                         command: command, on: tx)
        case (.cancelled, .succeeded), (.failed, .succeeded):
            guard stored.channelState != "reversed" else {
                return .rejected(code: "invalid_state", message: "\(request.paymentNo) had a late success already reversed")
            }
            return try await reverse(stored, reference: request.channelRef, on: tx)
        default:
            return .rejected(code: "invalid_state",
                             message: "\(request.paymentNo) is \(stored.payment.status.rawValue); a \(request.result.rawValue) result changes nothing")
        }
    }

    /// A late success: keep the payment as it ended, and give the money back at the channel.
    func reverse(_ stored: StoredPayment, reference: String, on tx: PostgresConnection) async throws -> Outcome {
        guard let channel = stored.payment.channel else {
            return .rejected(code: "invalid_state", message: "\(stored.payment.paymentNo) has no channel to reverse at")
        }
        let answer = try await context.channels.call(ChannelRequest(
            channel: channel, operation: .refund, idempotencyKey: ChannelKeys.reversal(stored.payment.paymentNo),
            amount: stored.payment.amount, currency: stored.payment.currency, resource: stored.payment.paymentNo))
        switch answer {
        case .succeeded, .pending: break
        case .transientError(let reason), .declined(let reason): return .retryLater("the reversal at \(channel) failed: \(reason)")
        case .noAnswer: return .retryLater("the reversal at \(channel) got no answer")
        }
        let now = context.clock.now
        var after = stored
        after.payment.version += 1
        after.payment.updatedAt = Timestamp.format(now)
        after.payment.failureMessage = (stored.payment.failureMessage.map { $0 + "; " } ?? "")
            + "\(channel) reported a success after the payment had ended (\(reference)); the money was given back"
        after.channelState = "reversed"
        guard try await payments.update(after, at: now, on: tx) else { throw ConcurrentChange(resource: stored.payment.paymentNo) }
        return .done([Event(type: "payment.reversed", merchantId: after.payment.merchantId,
                            resourceKey: "payment:\(after.payment.paymentNo)", data: after.payment)])
    }
}
