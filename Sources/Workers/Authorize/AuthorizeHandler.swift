import Fleet
import Foundation
import Logging
import Payments
import Postgres
import Store

/// `payment.create`: validate, check and reserve the merchant's limits, route to a channel, charge
/// it, and persist the payment with its outcome event — all inside the runtime's transaction.
///
/// Exactly once: the limit reservation is keyed by the command's idempotency key, so a redelivery
/// never reserves twice; a failure releases the reservation before the failed payment commits.
/// A transient channel error rolls everything back and is retried (the reservation stays, and the
/// retried command finds it); on the final attempt the payment fails with `channel_error`.
public struct AuthorizeHandler: CommandHandler {
    public let commandType = "payment.create"
    let ledger: LimitLedger
    let merchants = MerchantStore()
    let payments = PaymentStore()
    let risk = RiskStore()
    let channelStats: ChannelStatsStore
    let merchantCache: MerchantCache
    let riskRules: RiskRules
    let routing: @Sendable () -> RoutingConfig
    let liveChannels: @Sendable () -> LiveChannels
    let fx: FXTable
    let logger: Logger
    let clock: @Sendable () -> Date

    public init(ledger: LimitLedger, routing: @escaping @Sendable () -> RoutingConfig = { .defaults },
                liveChannels: @escaping @Sendable () -> LiveChannels = { LiveChannels() }, fx: FXTable = .defaults,
                riskRules: RiskRules = RiskRules(), logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.ledger = ledger
        self.channelStats = ChannelStatsStore(redis: ledger.redis)
        self.merchantCache = MerchantCache(redis: ledger.redis)
        self.riskRules = riskRules
        self.routing = routing
        self.liveChannels = liveChannels
        self.fx = fx
        self.logger = logger
        self.clock = clock
    }

    public func parse(_ data: JSONValue) -> Result<PaymentRequest, ValidationFailure> { PaymentRequest.parse(data) }

    public func handle(_ command: Command<PaymentRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let request = command.payload
        guard let merchant = try await merchantCache.merchant(id: command.merchantId, load: {
            try await merchants.find(id: command.merchantId, on: tx)
        }) else {
            return .rejected(code: "merchant_not_found", message: "no merchant \(TextRules.forLog(command.merchantId, limit: 64))")
        }
        guard let amountBase = fx.convert(request.amount, from: request.currency, to: merchant.baseCurrency) else {
            return .rejected(code: "invalid_request", message: "amount overflows when converted to \(merchant.baseCurrency.rawValue)",
                             errors: [FieldError("amount", "is too large")])
        }

        let now = clock()
        let paymentNo = Identifiers.paymentNo(merchantId: merchant.merchantId, idempotencyKey: command.idempotencyKey)
        let config = routing()
        let input = RoutingInput(amount: request.amount, currency: request.currency, country: request.country,
                                 payMethod: request.payMethod, forcedChannel: request.channel,
                                 mode: request.routingMode ?? config.defaultMode)
        let live = liveChannels()
        let decision = ChannelRouter(config: config).decide(input, stats: live.stats, openCircuits: live.open,
                                                            seed: Identifiers.seed(command.id))

        func finish(_ status: PaymentStatus, fee: Int64 = 0, failure: FailureCode? = nil, message: String? = nil,
                    reference: String? = nil) throws -> Outcome {
            let payment = Payment(paymentNo: paymentNo, merchantId: merchant.merchantId, request: request, status: status,
                                  channel: decision.channel, routing: decision, channelFee: fee, failureCode: failure?.rawValue,
                                  failureMessage: message, version: 1, at: now)
            return .done([Event(type: status.eventType, merchantId: merchant.merchantId, resourceKey: "payment:\(paymentNo)",
                                data: payment)],
                         effects: [try payments.insert(payment, amountBase: amountBase, channelRef: reference,
                                                       customer: request.customer, commandId: command.id)])
        }

        if request.currency != merchant.baseCurrency && !merchant.tier.policy.multiCurrency {
            return try finish(.failed, failure: .tierForbidden,
                                    message: "the \(merchant.tier.rawValue) tier takes \(merchant.baseCurrency.rawValue) only; multi-currency needs business or above")
        }
        // Risk before anything is reserved: the blacklist is read on every payment, so an entry
        // applies to the very next one on every replica.
        let candidates = [(BlacklistType.customerId, request.customer?.id), (.email, request.customer?.email),
                          (.ip, request.customer?.ip), (.country, request.country)]
            .compactMap { type, value in value.map { BlacklistEntry(type: type, value: $0) } }
        let policy = RiskPolicy(blacklist: try await risk.matching(candidates, on: tx), rules: riskRules)
        if case .block(let rule, let detail) = policy.evaluate(request) {
            let outcome = try finish(.failed, failure: .riskBlocked, message: "blocked by risk rule \(rule): \(detail)")
            guard case .done(let events, let effects) = outcome else { return outcome }
            return .done(events, effects: effects + [risk.event(merchantId: merchant.merchantId, paymentNo: paymentNo, rule: rule, detail: detail)])
        }

        guard let channel = decision.channel else {
            return try finish(.failed, failure: .noChannel,
                                    message: "no enabled channel takes \(request.currency.rawValue) by \(request.payMethod.rawValue)")
        }

        switch try await ledger.reserve(merchantId: merchant.merchantId, reservationKey: command.idempotencyKey,
                                        amount: amountBase, limits: merchant.limits, windows: LimitWindows(at: now)) {
        case .exceeded(let kind):
            return try finish(.failed, failure: .limitExceeded, message: "the \(kind.rawValue) limit would be exceeded")
        case .reserved, .alreadyReserved:
            break
        }

        let channelOutcome = SandboxChannel.outcome(channel: channel, amount: request.amount, paymentNo: paymentNo)
        switch channelOutcome {
        case .succeeded, .pending: try await channelStats.record(channel, success: true, at: now)
        case .declined, .transientError: try await channelStats.record(channel, success: false, at: now)
        }
        switch channelOutcome {
        case .succeeded(let reference):
            return try finish(.succeeded, fee: decision.estimatedFee ?? 0, reference: reference)
        case .pending(let reference):
            return try finish(.pending, fee: decision.estimatedFee ?? 0, reference: reference)
        case .declined:
            try await ledger.release(merchantId: merchant.merchantId, reservationKey: command.idempotencyKey)
            return try finish(.failed, failure: .channelDeclined, message: "\(channel) declined the payment")
        case .transientError where !command.isFinalAttempt:
            return .retryLater("\(channel) had a transient error")
        case .transientError:
            try await ledger.release(merchantId: merchant.merchantId, reservationKey: command.idempotencyKey)
            return try finish(.failed, failure: .channelError,
                                    message: "\(channel) kept failing after \(command.attempt) retries")
        }
    }
}
