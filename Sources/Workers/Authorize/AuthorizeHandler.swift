import Contract
import Fleet
import Foundation
import Logging
import PaymentServices
import Payments
import Postgres
import Store

/// `payment.create`: validate, check and reserve the merchant's limits, route to a channel, charge
/// it, and persist the payment with its outcome event — all inside the runtime's transaction.
///
/// Exactly once: the limit reservation is keyed by the command's idempotency key, so a redelivery
/// never reserves twice; a failure releases the reservation before the failed payment commits.
/// The transaction holds the merchant's limit lock shared (`locks`), so a rebuild of counters Redis
/// lost waits for it; finding them lost, the handler has them rebuilt and runs again.
/// A transient channel error rolls everything back and is retried (the reservation stays, and the
/// retried command finds it); on the final attempt the payment fails with `channel_error`.
public struct AuthorizeHandler: CommandHandler {
    public let commandType = "payment.create"
    let ledger: LimitLedger
    let record: LimitRecord
    let merchants = MerchantStore()
    let payments = PaymentStore()
    let risk = RiskStore()
    let configuration: Configuration
    let velocity: VelocityCounter
    let channelStats: ChannelStatsStore
    let merchantCache: MerchantCache
    let routing: @Sendable () -> RoutingConfig
    let liveChannels: @Sendable () -> LiveChannels
    let fx: @Sendable () -> FXTable
    let logger: Logger
    let clock: @Sendable () -> Date

    public init(ledger: LimitLedger, pool: PostgresPool, routing: @escaping @Sendable () -> RoutingConfig = { .defaults },
                liveChannels: @escaping @Sendable () -> LiveChannels = { LiveChannels() },
                fx: @escaping @Sendable () -> FXTable = { .defaults }, logger: Logger,
                clock: @escaping @Sendable () -> Date = { Date() }) {
        self.ledger = ledger
        self.record = LimitRecord(ledger: ledger, pool: pool)
        self.configuration = Configuration(redis: ledger.redis)
        self.velocity = VelocityCounter(redis: ledger.redis)
        self.channelStats = ChannelStatsStore(redis: ledger.redis)
        self.merchantCache = MerchantCache(redis: ledger.redis)
        self.routing = routing
        self.liveChannels = liveChannels
        self.fx = fx
        self.logger = logger
        self.clock = clock
    }

    public func locks(_ command: Command<PaymentRequest>) -> [PostgresStatement] {
        [LimitRecord.sharedLock(merchantId: command.merchantId)]
    }

    public func parse(_ data: JSONValue) -> Result<PaymentRequest, ValidationFailure> { PaymentRequest.parse(data) }

    public func handle(_ command: Command<PaymentRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let request = command.payload
        // One cache round trip for the merchant, the risk rules and every blacklist candidate.
        let candidates = [(BlacklistType.customerId, request.customer?.id), (.email, request.customer?.email),
                          (.ip, request.customer?.ip), (.country, request.country)]
            .compactMap { type, value in value.map { BlacklistEntry(type: type, value: $0) } }
        let reads = await merchantCache.cache.read([MerchantCache.cacheKey(command.merchantId)] + configuration.riskKeys(for: candidates))
        guard let merchant = try await merchantCache.merchant(id: command.merchantId, read: reads?.first, load: {
            try await merchants.find(id: command.merchantId, on: tx)
        }) else {
            return .rejected(code: "merchant_not_found", message: "no merchant \(TextRules.forLog(command.merchantId, limit: 64))")
        }
        guard let amountBase = fx().convert(request.amount, from: request.currency, to: merchant.baseCurrency) else {
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
        // Risk before anything is reserved. The rules and blacklist are read through the shared
        // cache, which a write invalidates: an entry applies to the very next payment on every replica.
        let policy = try await configuration.riskPolicy(for: candidates, reads: reads.map { Array($0.dropFirst()) }, on: tx)
        var verdict = policy.evaluate(request)
        if verdict == .allow, let limit = policy.rules.velocityLimit, let customerId = request.customer?.id {
            let recent = try await velocity.count(merchantId: merchant.merchantId, customerId: customerId,
                                                  commandKey: command.idempotencyKey, limit: limit,
                                                  windowSeconds: policy.rules.velocityWindowSeconds, at: now)
            verdict = policy.evaluate(request, recentPayments: recent)
        }
        if case .block(let rule, let detail) = verdict {
            let outcome = try finish(.failed, failure: .riskBlocked, message: "blocked by risk rule \(rule): \(detail)")
            guard case .done(let events, let effects, _) = outcome else { return outcome }
            return .done(events, effects: effects + [risk.event(merchantId: merchant.merchantId, paymentNo: paymentNo, rule: rule, detail: detail)])
        }

        guard let channel = decision.channel else {
            return try finish(.failed, failure: .noChannel,
                                    message: "no enabled channel takes \(request.currency.rawValue) by \(request.payMethod.rawValue)")
        }

        let windows = LimitWindows(at: now)
        switch try await ledger.reserve(merchantId: merchant.merchantId, reservationKey: command.idempotencyKey,
                                        amount: amountBase, limits: merchant.limits, windows: windows) {
        case .exceeded(let kind):
            return try finish(.failed, failure: .limitExceeded, message: "the \(kind.rawValue) limit would be exceeded")
        case .notLoaded:
            // Rebuilding waits for every reservation of this merchant in flight, this one included:
            // so after this transaction rolled back.
            let merchantId = merchant.merchantId
            return .rerun("the limit counters of \(merchantId) are not in Redis") {
                if try await record.rebuild(merchantId: merchantId, windows: windows) {
                    logger.notice("rebuilt limit counters from PostgreSQL", metadata: ["merchant": "\(merchantId)"])
                }
            }
        case .reserved, .alreadyReserved:
            break
        }

        let channelOutcome = SandboxChannel.outcome(channel: channel, amount: request.amount, paymentNo: paymentNo)
        switch channelOutcome {
        case .succeeded(let reference):
            // The channel's outcome and the commit of the reservation, in one round trip.
            let replies = try await ledger.redis.eval([
                channelStats.recordCall(channel, success: true, at: now),
                ledger.commitCall(merchantId: merchant.merchantId, reservationKey: command.idempotencyKey, amount: amountBase),
            ])
            _ = try LimitLedger.captured(replies[1], reservationKey: command.idempotencyKey)
            return try finish(.succeeded, fee: decision.estimatedFee ?? 0, reference: reference)
        case .pending(let reference):
            try await channelStats.record(channel, success: true, at: now)
            return try finish(.pending, fee: decision.estimatedFee ?? 0, reference: reference)
        case .declined:
            try await channelStats.record(channel, success: false, at: now)
            try await ledger.release(merchantId: merchant.merchantId, reservationKey: command.idempotencyKey, windows: windows)
            return try finish(.failed, failure: .channelDeclined, message: "\(channel) declined the payment")
        case .transientError where !command.isFinalAttempt:
            try await channelStats.record(channel, success: false, at: now)
            return .retryLater("\(channel) had a transient error")
        case .transientError:
            try await channelStats.record(channel, success: false, at: now)
            try await ledger.release(merchantId: merchant.merchantId, reservationKey: command.idempotencyKey, windows: windows)
            return try finish(.failed, failure: .channelError,
                                    message: "\(channel) kept failing after \(command.attempt) retries")
        }
    }
}
