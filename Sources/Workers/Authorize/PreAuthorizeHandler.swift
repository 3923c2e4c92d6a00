import Contract
import Fleet
import Foundation
import PaymentServices
import Payments
import Postgres
import Store

/// `preauth.create`: hold an amount at a channel for later captures (a hotel deposit).
///
/// Enterprise and premium merchants only (`tier_forbidden` otherwise). Risk, limits and routing
/// apply as for a payment, through the same steps (`Authorization`); the whole amount is reserved
/// until it is captured or released. A hold has no pending state: when the channel leaves it
/// pending or does not answer, the command is retried and the retry asks the channel what became
/// of the hold (the sandbox's `54` is then authorized).
public struct PreAuthorizeHandler: CommandHandler {
    public let commandType = "preauth.create"
    let steps: Authorization
    let preAuths = PreAuthStore()

    init(steps: Authorization) { self.steps = steps }

    public func locks(_ command: Command<PreAuthRequest>) -> [PostgresStatement] {
        [LimitRecord.sharedLock(merchantId: command.merchantId)]
    }

    public func parse(_ data: JSONValue) -> Result<PreAuthRequest, ValidationFailure> { PreAuthRequest.parse(data) }

    public func handle(_ command: Command<PreAuthRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let request = command.payload.payment
        let number = Identifiers.preAuthNo(merchantId: command.merchantId, idempotencyKey: command.idempotencyKey)

        func finish(_ checked: Authorization.Context, _ status: PreAuthStatus, failure: FailureCode? = nil, message: String? = nil,
                    reference: String? = nil, effects: [PostgresStatement] = []) throws -> Outcome {
            // The hold lasts from the first attempt, like the windows that count it.
            let expiresAt = checked.countedAt.addingTimeInterval(TimeInterval(command.payload.expiresInSeconds))
            let preAuth = PreAuthorization(preAuthNo: number, merchantId: checked.merchant.merchantId, orderNo: request.orderNo,
                                           amount: request.amount, currency: request.currency, channel: checked.decision.channel,
                                           status: status, expiresAt: expiresAt, failureCode: failure?.rawValue,
                                           failureMessage: message, version: 1, createdAt: checked.now, updatedAt: checked.now)
            let stored = StoredPreAuth(preAuth: preAuth, request: request, routing: checked.decision, amountBase: checked.amountBase,
                                       limitKey: command.idempotencyKey, countedAt: checked.countedAt, channelRef: reference,
                                       customer: request.customer, expiresAt: expiresAt, createdAt: checked.now)
            // The order exists from its first pre-authorization on; its captures will pay it.
            let orderChange = steps.orders.record(checked.order, checked.order, at: checked.now)
            return .done([Event(type: preAuth.eventType, merchantId: preAuth.merchantId, resourceKey: "preauth:\(number)", data: preAuth)]
                            + orderChange.events,
                         effects: [try preAuths.insert(stored, commandId: command.id)] + effects
                            + (status == .authorized ? [steps.counted(command, checked, ref: number)] : []) + orderChange.effects)
        }

        let checked: Authorization.Context, channel: String
        let tierCheck: (Merchant) -> String? = { merchant in
            merchant.tier.policy.preAuthorization ? nil
                : "the \(merchant.tier.rawValue) tier cannot pre-authorize; enterprise and premium can"
        }
        switch try await steps.check(command, request: request, tierCheck: tierCheck, on: tx) {
        case .outcome(let outcome): return outcome
        case .failed(let code, let message, let context, let effects):
            return try finish(context, .failed, failure: code, message: message, effects: effects)
        case .ready(let context, let chosen):
            checked = context
            channel = chosen
        }

        let answer = try await steps.callChannel(channel, request: request, resource: number, isRetry: checked.isRetry)
        try await steps.recordOutcome(channel, answer, at: checked.now)
        switch answer {
        case .succeeded(let reference):
            return try finish(checked, .authorized, reference: reference)
        case .declined(let reason):
            try await steps.release(command)
            return try finish(checked, .failed, failure: .channelDeclined, message: reason)
        case .pending, .noAnswer, .transientError:
            guard command.isFinalAttempt else { return .retryLater("\(channel) has not confirmed the hold yet") }
            try await steps.release(command)
            return try finish(checked, .failed, failure: .channelError,
                              message: "\(channel) did not confirm the hold after \(command.attempt) retries")
        }
    }

    /// A parked command gives back what it reserved.
    public func parked(_ command: Command<PreAuthRequest>, reason: String) async throws {
        try await steps.release(command)
    }
}
