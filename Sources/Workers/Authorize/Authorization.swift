import Contract
import Fleet
import Foundation
import Logging
import PaymentServices
import Payments
import Postgres
import Store

/// The steps a charge (`payment.create`) and a hold (`preauth.create`) share: read the merchant,
/// check its tier and risk, pin the first decision, reserve the limits, call the channel.
///
/// Exactly once, across retries and redeliveries:
/// - the routing decision, the amount reserved and the time whose limit windows count it are
///   pinned by the first attempt (`CommandPins`, outside the transaction), so a retry never moves
///   to another channel nor to another window;
/// - the channel call's idempotency key is the resource's (`pay_…:authorize`), and a retry first
///   asks the channel what became of it, so a charge whose commit failed is not made again;
/// - the reservation is keyed by the command; every failure releases it, including failures
///   decided before the reserve step on a later attempt (a tier change, a new blacklist entry),
///   and the runtime's `parked` call releases what a parked command held.
struct Authorization: Sendable {
    let context: PaymentContext
    let settings: PaymentSettings
    let merchants = MerchantStore()
    let risk = RiskStore()
    let velocity: VelocityCounter
    let channelStats: ChannelStatsStore
    let merchantCache: MerchantCache
    let orders = OrderBook()

    init(context: PaymentContext, settings: PaymentSettings) {
        self.context = context
        self.settings = settings
        velocity = VelocityCounter(redis: context.environment.redis)
        channelStats = ChannelStatsStore(redis: context.environment.redis)
        merchantCache = MerchantCache(redis: context.environment.redis)
    }

    /// Where the checks left the command.
    enum Checked: Sendable {
        /// Decided without the channel: the resource fails with this code (its reservation, if an
        /// earlier attempt made one, is already released); `effects` go with it.
        case failed(FailureCode, String, Context, effects: [PostgresStatement])
        /// The runtime's answer as it is (rejected, rerun).
        case outcome(Outcome)
        /// Reserved and routed: call the channel.
        case ready(Context, channel: String)
    }

    /// What the steps learnt, for the handler to build its resource from.
    struct Context: Sendable {
        let merchant: Merchant
        let amountBase: Int64
        let decision: RoutingDecision
        /// When the first attempt ran: its windows count the reservation.
        let countedAt: Date
        let now: Date
        /// True when an earlier attempt pinned the decision (and may have called the channel).
        let isRetry: Bool
        /// The order it pays for, held for this transaction, as it was before this command.
        let order: Order
        /// `decision` as the pin wrote it (`CanonicalJSON`), for the resource's row; nil when not pinned by this attempt.
        var decisionText: String? = nil
    }

    /// Runs every check up to the channel. `tierCheck` adds the resource's own tier rule (a
    /// pre-authorization needs enterprise or premium).
    func check<P>(_ command: Command<P>, request: PaymentRequest, tierCheck: (Merchant) -> String? = { _ in nil },
                  on tx: PostgresConnection) async throws -> Checked {
        // One cache round trip for the merchant, the risk rules and every blacklist candidate.
        let candidates = [(BlacklistType.customerId, request.customer?.id), (.email, request.customer?.email),
                          (.ip, request.customer?.ip), (.country, request.country)]
            .compactMap { type, value in value.map { BlacklistEntry(type: type, value: $0) } }
        let configuration = settings.configuration
        let reads = await merchantCache.cache.read([MerchantCache.cacheKey(command.merchantId)] + configuration.riskKeys(for: candidates))
        guard let merchant = try await merchantCache.merchant(id: command.merchantId, read: reads?.first, load: {
            try await merchants.find(id: command.merchantId, on: tx)
        }) else {
            return .outcome(.rejected(code: "merchant_not_found", message: "no merchant \(TextRules.forLog(command.merchantId, limit: 64))"))
        }
        guard let amountBase = settings.fx.current.convert(request.amount, from: request.currency, to: merchant.baseCurrency) else {
            return .outcome(.rejected(code: "invalid_request", message: "amount overflows when converted to \(merchant.baseCurrency.rawValue)",
                                      errors: [FieldError("amount", "is too large")]))
        }
        let now = context.clock.now
        let config = settings.routing.current
        let input = RoutingInput(amount: request.amount, currency: request.currency, country: request.country,
                                 payMethod: request.payMethod, forcedChannel: request.channel,
                                 mode: request.routingMode ?? config.defaultMode)
        let live = settings.channels.current
        let proposed = ChannelRouter(config: config).decide(input, stats: live.stats, openCircuits: live.open,
                                                            seed: Identifiers.seed(command.id))
        // The order is held from here to the commit, so the payments of one order take turns.
        let order = try await orders.hold(merchantId: merchant.merchantId, orderNo: request.orderNo, amount: request.amount,
                                          currency: request.currency, at: now, on: tx)
        var checked = Context(merchant: merchant, amountBase: amountBase, decision: proposed, countedAt: now, now: now, isRetry: false,
                              order: order)

        func fail(_ code: FailureCode, _ message: String, effects: [PostgresStatement] = []) async throws -> Checked {
            // An earlier attempt may have reserved (then rolled back to retry): give it back.
            try await release(command)
            return .failed(code, message, checked, effects: effects)
        }

        // A paid or cancelled order takes no new payment, unless an earlier attempt of this very
        // command may already have charged (then the channel's answer decides, as on any retry).
        if let refusal = order.status.refusal,
           try await !context.pins.exists(merchantId: merchant.merchantId, key: command.idempotencyKey) {
            return try await fail(refusal, "order \(TextRules.forLog(request.orderNo, limit: 64)) is \(order.status.rawValue)")
        }
        if request.currency != merchant.baseCurrency && !merchant.tier.policy.multiCurrency {
            return try await fail(.tierForbidden,
                                  "the \(merchant.tier.rawValue) tier takes \(merchant.baseCurrency.rawValue) only; multi-currency needs business or above")
        }
        if let refusal = tierCheck(merchant) { return try await fail(.tierForbidden, refusal) }
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
            return try await fail(.riskBlocked, "blocked by risk rule \(rule): \(detail)",
                                  effects: [risk.event(merchantId: merchant.merchantId, paymentNo: resourceNumber(command), rule: rule,
                                                       detail: detail)])
        }
        guard proposed.channel != nil else {
            return try await fail(.noChannel, "no enabled channel takes \(request.currency.rawValue) by \(request.payMethod.rawValue)")
        }

        // The first attempt's decision stands for every later one.
        let pin = try await context.pins.pin(merchantId: merchant.merchantId, key: command.idempotencyKey, proposed: CommandPins.Pin(
            requestHash: command.requestHash, decision: proposed, amountBase: amountBase, countedAt: now, isNew: true))
        guard pin.requestHash == command.requestHash else {
            return .outcome(.keyInUse("this idempotency key is held by another command with another payload"))
        }
        guard let decision = pin.decision, let channel = decision.channel else {
            throw StoreError.corrupt("command pin of \(command.idempotencyKey) has no channel")
        }
        checked = Context(merchant: merchant, amountBase: pin.amountBase, decision: decision, countedAt: pin.countedAt, now: now,
                          isRetry: !pin.isNew, order: order, decisionText: pin.decisionText)

        let windows = LimitWindows(at: pin.countedAt)
        switch try await context.ledger.reserve(merchantId: merchant.merchantId, reservationKey: command.idempotencyKey,
                                                amount: pin.amountBase, limits: merchant.limits, windows: windows) {
        case .exceeded(let kind):
            return try await fail(.limitExceeded, "the \(kind.rawValue) limit would be exceeded")
        case .conflict:
            return .outcome(.keyInUse("this idempotency key holds a reservation for another amount"))
        case .notLoaded:
            // Rebuilding waits for every reservation of this merchant in flight, this one included:
            // so after this transaction rolled back.
            let merchantId = merchant.merchantId, record = context.record, logger = context.logger
            return .outcome(.rerun("the limit counters of \(merchantId) are not in Redis") {
                if try await record.rebuild(merchantId: merchantId, windows: LimitWindows(at: now)) {
                    logger.notice("rebuilt limit counters from PostgreSQL", metadata: ["merchant": "\(merchantId)"])
                }
            })
        case .reserved, .alreadyReserved:
            return .ready(checked, channel: channel)
        }
    }

    /// Asks the channel to charge or hold. A retried command first asks what became of its call,
    /// and calls only if the channel has no answer for it.
    func callChannel(_ channel: String, request: PaymentRequest, resource: String, isRetry: Bool) async throws -> ChannelAnswer {
        let key = ChannelKeys.authorize(resource)
        if isRetry {
            switch try await context.channels.status(channel: channel, idempotencyKey: key) {
            case .succeeded(let reference): return .succeeded(reference: reference)
            case .pending: return .pending(reference: "")
            case .failed, .unknown: break
            }
        }
        return try await context.channels.call(ChannelRequest(channel: channel, operation: .authorize, idempotencyKey: key,
                                                              amount: request.amount, currency: request.currency, resource: resource))
    }

    /// Records the channel's live outcome (routing and the circuit breaker read it).
    func recordOutcome(_ channel: String, _ answer: ChannelAnswer, at now: Date) async throws {
        let success = switch answer {
        case .succeeded, .pending: true
        case .declined, .transientError, .noAnswer: false
        }
        try await channelStats.record(channel, success: success, at: now)
    }

    /// A charge that succeeded: its live outcome and the commit of the whole reservation, in one
    /// round trip to Redis.
    func recordSuccessAndCommit<P>(_ command: Command<P>, channel: String, amountBase: Int64, at now: Date) async throws {
        let replies = try await context.ledger.redis.eval([
            channelStats.recordCall(channel, success: true, at: now),
            context.ledger.commitCall(merchantId: command.merchantId, reservationKey: command.idempotencyKey, amount: amountBase),
        ])
        _ = try LimitLedger.captured(replies[1], reservationKey: command.idempotencyKey)
    }

    /// Gives back what the command reserved (a no-op unless it holds a reservation).
    func release<P>(_ command: Command<P>) async throws {
        try await context.ledger.release(merchantId: command.merchantId, reservationKey: command.idempotencyKey,
                                         windows: LimitWindows(at: context.clock.now))
    }

    /// The limit entry of a resource that now counts (pending, succeeded or authorized).
    func counted<P>(_ command: Command<P>, _ checked: Context, ref: String) -> PostgresStatement {
        LimitRecord.entry(.reserve, merchantId: checked.merchant.merchantId, limitKey: command.idempotencyKey,
                          countedAt: checked.countedAt, amount: checked.amountBase, at: checked.now, ref: ref)
    }

    /// The resource's number, derived like the ingress derives it.
    func resourceNumber<P>(_ command: Command<P>) -> String {
        command.type == "preauth.create"
            ? Identifiers.preAuthNo(merchantId: command.merchantId, idempotencyKey: command.idempotencyKey)
            : Identifiers.paymentNo(merchantId: command.merchantId, idempotencyKey: command.idempotencyKey)
    }
}
