import Contract
/// One payment channel as configured (hot-reloadable; defaults from RULES.md).
public struct ChannelConfig: Sendable, Codable, Equatable {
    public var name: String
    public var enabled: Bool
    /// Percentage fee in basis points (2.9% = 290).
    public var feeBasisPoints: Int64
    /// Fixed fee in minor units of the payment's currency.
    public var fixedFee: Int64
    /// Configured success rate in 0...1; the prior for the live rate.
    public var successRate: Double
    public var currencies: [Currency]
    public var payMethods: [PayMethod]
    public var localCountries: [String]
    /// Load-balance weight (default 100).
    public var weight: Int

    enum CodingKeys: String, CodingKey {
        case name, enabled, feeBasisPoints = "fee_bps", fixedFee = "fixed_fee", successRate = "success_rate"
        case currencies, payMethods = "pay_methods", localCountries = "local_countries", weight
    }

    public init(name: String, enabled: Bool = true, feeBasisPoints: Int64, fixedFee: Int64 = 0, successRate: Double,
                currencies: [Currency], payMethods: [PayMethod], localCountries: [String], weight: Int = 100) {
        self.name = name
        self.enabled = enabled
        self.feeBasisPoints = feeBasisPoints
        self.fixedFee = fixedFee
        self.successRate = successRate
        self.currencies = currencies
        self.payMethods = payMethods
        self.localCountries = localCountries
        self.weight = weight
    }

    /// The channel's fee for `amount`: basis points rounded half-up, plus the fixed fee, and never
    /// more than the amount itself (a fixed fee would otherwise exceed a tiny payment).
    public func fee(for amount: Int64) -> Int64? {
        MoneyMath.basisPoints(amount, feeBasisPoints).flatMap { MoneyMath.add($0, fixedFee) }.map { min($0, max(amount, 0)) }
    }
}

/// The channel table and the default mode (`GET`/`PUT /api/v1/admin/routing`).
public struct RoutingConfig: Sendable, Codable, Equatable {
    public var defaultMode: RoutingMode
    public var channels: [ChannelConfig]

    enum CodingKeys: String, CodingKey { case defaultMode = "default_mode", channels }

    public init(defaultMode: RoutingMode, channels: [ChannelConfig]) {
        self.defaultMode = defaultMode
        self.channels = channels
    }

    /// RULES.md "Routing": the seed's five channels.
    public static let defaults = RoutingConfig(defaultMode: .balanced, channels: [
        ChannelConfig(name: "alipay", feeBasisPoints: 60, successRate: 0.98, currencies: [.CNY, .USD],
                      payMethods: [.wallet, .qr], localCountries: ["CN"]),
        ChannelConfig(name: "wechat", feeBasisPoints: 60, successRate: 0.97, currencies: [.CNY],
                      payMethods: [.wallet, .qr], localCountries: ["CN"]),
        ChannelConfig(name: "stripe", feeBasisPoints: 290, fixedFee: 30, successRate: 0.95,
                      currencies: [.USD, .EUR, .GBP, .JPY, .CNY, .SGD], payMethods: [.card, .wallet],
                      localCountries: ["US", "GB", "SG", "JP"] + Country.europeanUnion),
        ChannelConfig(name: "paypal", feeBasisPoints: 340, successRate: 0.92, currencies: [.USD, .EUR, .GBP, .JPY, .CNY],
                      payMethods: [.wallet, .card], localCountries: []),
        ChannelConfig(name: "crypto", feeBasisPoints: 100, successRate: 0.88, currencies: [.BTC, .ETH, .USDT],
                      payMethods: [.crypto], localCountries: []),
    ])
}

/// A routing strategy and its priority (RULES: geographic 90, success 80, cost 50, load balance 30).
public enum RoutingStrategy: String, Sendable, Codable, CaseIterable {
    case geographic, success, cost
    case loadBalance = "load_balance"

    public var priority: Double {
        switch self {
        case .geographic: 90
        case .success: 80
        case .cost: 50
        case .loadBalance: 30
        }
    }
}

/// Why a routing decision went the way it did: the strategy that separated the winner from the rest.
public enum DecidingReason: String, Sendable, Codable {
    case geographic, success, cost
    case loadBalance = "load_balance"
    case onlyCandidate = "only_candidate"
    case forced
}

/// The four strategy scores of one candidate, each in 0...1 (1 = best).
public struct StrategyScores: Sendable, Codable, Equatable {
    public var geographic: Double
    public var success: Double
    public var cost: Double
    public var loadBalance: Double

    enum CodingKeys: String, CodingKey { case geographic, success, cost, loadBalance = "load_balance" }

    public subscript(strategy: RoutingStrategy) -> Double {
        switch strategy {
        case .geographic: geographic
        case .success: success
        case .cost: cost
        case .loadBalance: loadBalance
        }
    }

    /// The priority-weighted mean of the four scores (`balanced`).
    public var balanced: Double {
        let weights = RoutingStrategy.allCases.map(\.priority)
        let total = RoutingStrategy.allCases.map { self[$0] * $0.priority }.reduce(0, +)
        return total / weights.reduce(0, +)
    }
}

/// One candidate's scores in a decision record.
public struct RoutingCandidate: Sendable, Codable, Equatable {
    public var channel: String
    public var scores: StrategyScores
    public var total: Double
    public var fee: Int64
    public var successRate: Double

    enum CodingKeys: String, CodingKey { case channel, scores, total, fee, successRate = "success_rate" }
}

/// A channel left out of the candidates, and why.
public struct RoutingExclusion: Sendable, Codable, Equatable {
    public var channel: String
    public var reason: String

    public init(channel: String, reason: String) {
        self.channel = channel
        self.reason = reason
    }
}

/// The whole routing decision, kept on the payment for audit.
public struct RoutingDecision: Sendable, Codable, Equatable {
    public var mode: RoutingMode
    /// The chosen channel, or nil when there was no candidate (`no_channel`).
    public var channel: String?
    public var strategy: DecidingReason?
    public var estimatedFee: Int64?
    public var candidates: [RoutingCandidate]
    public var excluded: [RoutingExclusion]
    public var seed: UInt64

    enum CodingKeys: String, CodingKey {
        case mode, channel, strategy, estimatedFee = "estimated_fee", candidates, excluded, seed
    }
}

/// What the router needs to know about a payment.
public struct RoutingInput: Sendable, Equatable {
    public var amount: Int64
    public var currency: Currency
    public var country: String
    public var payMethod: PayMethod
    public var forcedChannel: String?
    public var mode: RoutingMode

    public init(amount: Int64, currency: Currency, country: String, payMethod: PayMethod,
                forcedChannel: String? = nil, mode: RoutingMode = .balanced) {
        self.amount = amount
        self.currency = currency
        self.country = country
        self.payMethod = payMethod
        self.forcedChannel = forcedChannel
        self.mode = mode
    }
}

/// Live outcomes of one channel over the sliding window.
public struct ChannelStats: Sendable, Equatable {
    public var attempts: Int
    public var successes: Int
    public init(attempts: Int, successes: Int) {
        self.attempts = attempts
        self.successes = successes
    }
}

/// Chooses a channel for a payment. Pure: the same inputs and seed give the same decision.
public struct ChannelRouter: Sendable {
    /// Weight of the configured rate, in attempts, when blended with live outcomes.
    public static let priorWeight = 20.0
    /// Candidates within this fraction of the best score are chosen among at random, by weight.
    public static let tieTolerance = 0.01
    /// A channel is skipped when its live rate is below this over at least `circuitMinimumAttempts`.
    public static let circuitThreshold = 0.5
    public static let circuitMinimumAttempts = 20

    public var config: RoutingConfig

    public init(config: RoutingConfig) { self.config = config }

    /// The configured rate blended with live outcomes: `(prior * k + successes) / (k + attempts)`.
    public static func blendedSuccessRate(prior: Double, stats: ChannelStats?) -> Double {
        guard let stats, stats.attempts > 0 else { return prior }
        return (prior * priorWeight + Double(stats.successes)) / (priorWeight + Double(stats.attempts))
    }

    /// True when the live outcomes should open the channel's circuit breaker.
    public static func shouldOpenCircuit(_ stats: ChannelStats) -> Bool {
        stats.attempts >= circuitMinimumAttempts && Double(stats.successes) / Double(stats.attempts) < circuitThreshold
    }

    public func decide(_ input: RoutingInput, stats: [String: ChannelStats] = [:],
                       openCircuits: Set<String> = [], seed: UInt64) -> RoutingDecision {
        var excluded: [RoutingExclusion] = []
        var eligible: [(channel: ChannelConfig, fee: Int64, rate: Double)] = []
        for channel in config.channels {
            let reason: String? =
                if let forced = input.forcedChannel, forced != channel.name { "not_requested" }
                else if !channel.enabled { "disabled" }
                else if openCircuits.contains(channel.name) { "circuit_open" }
                else if !channel.currencies.contains(input.currency) { "currency_unsupported" }
                else if !channel.payMethods.contains(input.payMethod) { "pay_method_unsupported" }
                else if channel.fee(for: input.amount) == nil { "fee_overflow" }
                else { nil }
            if let reason {
                excluded.append(RoutingExclusion(channel: channel.name, reason: reason))
            } else {
                let rate = Self.blendedSuccessRate(prior: channel.successRate, stats: stats[channel.name])
                eligible.append((channel, channel.fee(for: input.amount)!, rate))
            }
        }
        guard !eligible.isEmpty else {
            return RoutingDecision(mode: input.mode, channel: nil, strategy: nil, estimatedFee: nil,
                                   candidates: [], excluded: excluded, seed: seed)
        }

        let rates = eligible.map(\.rate), fees = eligible.map(\.fee)
        let maxWeight = max(1, eligible.map(\.channel.weight).max()!)
        let candidates = eligible.map { entry in
            let scores = StrategyScores(
                geographic: entry.channel.localCountries.contains(input.country) ? 1 : 0,
                success: Self.normalized(entry.rate, among: rates, higherIsBetter: true),
                cost: Self.normalized(Double(entry.fee), among: fees.map(Double.init), higherIsBetter: false),
                loadBalance: Double(max(0, entry.channel.weight)) / Double(maxWeight))
            return RoutingCandidate(channel: entry.channel.name, scores: scores, total: scores.balanced,
                                    fee: entry.fee, successRate: entry.rate)
        }

        // Rank: the mode's own score first (balanced: the weighted mean), then balanced.
        let primary: (RoutingCandidate) -> Double = { candidate in
            switch input.mode {
            case .balanced: candidate.total
            case .cost: candidate.scores.cost
            case .success: candidate.scores.success
            case .geographic: candidate.scores.geographic
            }
        }
        let bestPrimary = candidates.map(primary).max()!
        let closeOnPrimary = candidates.filter { Self.isWithinTolerance(primary($0), of: bestPrimary) }
        let bestTotal = closeOnPrimary.map(\.total).max()!
        let tied = closeOnPrimary.filter { Self.isWithinTolerance($0.total, of: bestTotal) }

        var generator = SplitMix64(seed: seed)
        let weights = tied.map { weight(of: $0.channel) }
        let winner = tied[Self.weightedIndex(weights, using: &generator)]

        let others = candidates.filter { $0.channel != winner.channel }
        let strategy: DecidingReason
        if input.forcedChannel != nil {
            strategy = .forced
        } else if others.isEmpty {
            strategy = .onlyCandidate
        } else if tied.count > 1 {
            strategy = .loadBalance
        } else if input.mode != .balanced, others.allSatisfy({ primary($0) < primary(winner) }) {
            strategy = DecidingReason(rawValue: input.mode.rawValue)!
        } else {
            let runnerUp = others.max { $0.total < $1.total }!
            let separating = RoutingStrategy.allCases.first { winner.scores[$0] > runnerUp.scores[$0] } ?? .loadBalance
            strategy = DecidingReason(rawValue: separating.rawValue)!
        }
        return RoutingDecision(mode: input.mode, channel: winner.channel, strategy: strategy, estimatedFee: winner.fee,
                               candidates: candidates, excluded: excluded, seed: seed)
    }

    private func weight(of channel: String) -> Int {
        config.channels.first { $0.name == channel }.map { max(0, $0.weight) } ?? 0
    }

    static func isWithinTolerance(_ value: Double, of best: Double) -> Bool {
        value >= best - abs(best) * tieTolerance - 1e-12
    }

    /// Min-max normalization over the candidates; 1 is best; all equal gives 1.
    static func normalized(_ value: Double, among values: [Double], higherIsBetter: Bool) -> Double {
        let low = values.min()!, high = values.max()!
        guard high > low else { return 1 }
        return higherIsBetter ? (value - low) / (high - low) : (high - value) / (high - low)
    }

    /// An index chosen with probability proportional to its weight (uniform when all weights are 0).
    static func weightedIndex(_ weights: [Int], using generator: inout SplitMix64) -> Int {
        let total = weights.reduce(0, +)
        guard weights.count > 1 else { return 0 }
        guard total > 0 else { return Int(generator.next() % UInt64(weights.count)) }
        var pick = Int(generator.next() % UInt64(total))
        for (index, weight) in weights.enumerated() {
            if pick < weight { return index }
            pick -= weight
        }
        return weights.count - 1
    }
}

/// A small, seedable pseudo-random generator (SplitMix64), so routing ties replay identically.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension RoutingConfig {
    /// Every problem with a configuration document (`PUT /api/v1/admin/routing` answers 400 with them
    /// and changes nothing).
    public var validationErrors: [FieldError] {
        var errors: [FieldError] = []
        if channels.isEmpty { errors.append(FieldError("channels", "must name at least one channel")) }
        var seen = Set<String>()
        for (index, channel) in channels.enumerated() {
            let path = "channels[\(index)]"
            if channel.name.isEmpty || channel.name.count > 32
                || !channel.name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }) {
                errors.append(FieldError("\(path).name", "must be 1-32 lowercase letters, digits or _"))
            }
            if !seen.insert(channel.name).inserted { errors.append(FieldError("\(path).name", "is a duplicate")) }
            if !(0...10_000).contains(channel.feeBasisPoints) { errors.append(FieldError("\(path).fee_bps", "must be 0...10000")) }
            if channel.fixedFee < 0 { errors.append(FieldError("\(path).fixed_fee", "must not be negative")) }
            if !(0...1).contains(channel.successRate) { errors.append(FieldError("\(path).success_rate", "must be within 0...1")) }
            if channel.weight < 0 { errors.append(FieldError("\(path).weight", "must not be negative")) }
            if channel.currencies.isEmpty { errors.append(FieldError("\(path).currencies", "must not be empty")) }
            if channel.payMethods.isEmpty { errors.append(FieldError("\(path).pay_methods", "must not be empty")) }
            for country in channel.localCountries where !Country.isValid(country) {
                errors.append(FieldError("\(path).local_countries", "\(TextRules.forLog(country, limit: 8)) is not an ISO 3166-1 alpha-2 code"))
            }
        }
        return errors
    }
}
