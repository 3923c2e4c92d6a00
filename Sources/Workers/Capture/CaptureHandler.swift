import Contract
import Fleet
import Foundation
import PaymentServices
import Payments
import Postgres
import Store

/// `preauth.capture`: take part or all of a held amount.
///
/// Partial and repeated captures up to the authorized amount; `final`, or capturing all that
/// remains, ends the pre-authorization and releases the rest. Each capture creates a `succeeded`
/// payment carrying `pre_auth_no`.
///
/// One winner under races: the command holds the pre-authorization's row (`FOR UPDATE`) while it
/// decides and calls the channel, and writes its change as one conditional update on status,
/// version and `expires_at > now`. Concurrent captures take turns, so they never exceed the
/// authorized amount; a capture racing the expiry sweep either wins, or finds it expired and gets
/// `invalid_state`. The channel call is keyed by the capture command (`pa_…:capture:<key>`).
public struct CaptureHandler: CommandHandler {
    public let commandType = "preauth.capture"
    let context: PaymentContext
    let preAuths = PreAuthStore()
    let payments = PaymentStore()
    let orders = OrderBook()

    init(context: PaymentContext) { self.context = context }

    public func locks(_ command: Command<CaptureRequest>) -> [PostgresStatement] {
        [LimitRecord.sharedLock(merchantId: command.merchantId)]
    }

    public func parse(_ data: JSONValue) -> Result<CaptureRequest, ValidationFailure> { CaptureRequest.parse(data) }

    public func handle(_ command: Command<CaptureRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let request = command.payload
        guard let stored = try await preAuths.load(preAuthNo: request.preAuthNo, merchantId: command.merchantId, lock: true, on: tx) else {
            return .rejected(code: "not_found", message: "no pre-authorization \(request.preAuthNo)")
        }
        let now = context.clock.now
        let before = stored.preAuth
        guard stored.expiresAt > now || !before.status.isOpen else {
            return .rejected(code: "invalid_state", message: "\(before.preAuthNo) expired at \(before.expiresAt)")
        }
        var amounts = before.amounts
        let capture: PreAuthorizationAmounts.Capture
        do {
            capture = try amounts.capture(request.amount, final: request.final)
        } catch .invalidState(let status) {
            return .rejected(code: "invalid_state", message: "\(before.preAuthNo) is \(status.rawValue): nothing can be captured")
        } catch .exceedsRemaining(let remaining) {
            return .rejected(code: "invalid_state", message: "a capture of \(request.amount ?? 0) exceeds the \(remaining) that remains")
        } catch {
            return .rejected(code: "invalid_request", message: "the capture amount must be positive", errors: [FieldError("amount", "must be positive")])
        }
        guard let channel = before.channel else { throw StoreError.corrupt("pre-authorization \(before.preAuthNo) has no channel") }

        let answer = try await context.channels.call(ChannelRequest(
            channel: channel, operation: .capture, idempotencyKey: ChannelKeys.capture(before.preAuthNo, commandKey: command.idempotencyKey),
            amount: capture.amount, currency: before.currency, resource: before.preAuthNo))
        let reference: String
        switch ChannelAnswers.settle(answer, at: channel, doing: "capture", command: command) {
        case .moved(let ref): reference = ref
        case .stopped(let outcome): return outcome
        }

        var after = stored
        after.preAuth.status = amounts.status
        after.preAuth.capturedAmount = amounts.captured
        after.preAuth.captureCount = amounts.captureCount
        after.preAuth.releasedAmount += capture.released
        after.preAuth.version += 1
        after.preAuth.updatedAt = Timestamp.format(now)
        guard try await preAuths.update(after, from: before.status, deadline: .unexpired(at: now), at: now, on: tx) else {
            throw ConcurrentChange(resource: before.preAuthNo)
        }

        // The capture's share of the reservation (base currency) is committed; what a final
        // capture leaves is released.
        let captureBase = BaseShare.slice(from: before.capturedAmount, to: amounts.captured, of: before.amount, base: stored.amountBase)
        _ = try await context.ledger.commit(merchantId: before.merchantId, reservationKey: stored.limitKey, amount: captureBase,
                                            captureKey: command.idempotencyKey)
        var effects: [PostgresStatement] = []
        if capture.released > 0 {
            let releasedBase = stored.amountBase - after.capturedBase
            try await context.ledger.release(merchantId: before.merchantId, reservationKey: stored.limitKey, windows: LimitWindows(at: now),
                                             recorded: (releasedBase, stored.countedAt))
            effects.append(LimitRecord.entry(.release, merchantId: before.merchantId, limitKey: stored.limitKey, countedAt: stored.countedAt,
                                             amount: releasedBase, at: now, ref: before.preAuthNo))
        }

        let paymentNo = Identifiers.capturePaymentNo(merchantId: before.merchantId, captureKey: command.idempotencyKey)
        var captured = stored.request
        captured.amount = capture.amount
        let fee = stored.routing?.estimatedFee.map {
            BaseShare.slice(from: before.capturedAmount, to: amounts.captured, of: before.amount, base: $0)
        } ?? 0
        var payment = Payment(paymentNo: paymentNo, merchantId: before.merchantId, request: captured, status: .succeeded,
                              channel: channel, routing: stored.routing, channelFee: fee, version: 1, at: now)
        payment.preAuthNo = before.preAuthNo
        let record = StoredPayment(payment: payment, amountBase: captureBase, limitKey: stored.limitKey, countedAt: stored.countedAt,
                                   channelRef: reference, customer: stored.customer, createdAt: now)
        effects.insert(try payments.insert(record, commandId: command.id), at: 0)
        // Each capture is a payment of the pre-authorization's order, and pays it; the order keeps
        // its amount (the one held), whatever the captures add up to.
        let order = try await orders.update(of: payment, at: now, on: tx) { order in
            order.attempt(paymentNo, amount: order.amount, currency: order.currency)
            order.paid(capture.amount)
        }
        return .done([Event(type: PaymentStatus.succeeded.eventType, merchantId: before.merchantId, resourceKey: "payment:\(paymentNo)",
                            data: payment),
                      Event(type: after.preAuth.eventType, merchantId: before.merchantId, resourceKey: "preauth:\(before.preAuthNo)",
                            data: after.preAuth)] + order.events,
                     effects: effects + order.effects)
    }
}
