/// A merchant tier. Everything a tier decides lives in one table, `TierPolicy.table`.
public enum Tier: String, Sendable, Codable, CaseIterable, Comparable {
    case starter, business, enterprise, premium

    public static func < (a: Tier, b: Tier) -> Bool { a.rank < b.rank }
    var rank: Int { Tier.allCases.firstIndex(of: self)! }

    /// The next tier up, or nil for the top tier.
    public var next: Tier? { rank + 1 < Tier.allCases.count ? Tier.allCases[rank + 1] : nil }

    /// This tier's policy.
    public var policy: TierPolicy { TierPolicy.table[self]! }
}

/// How often a merchant's balance is paid out.
public enum SettlementCycle: String, Sendable, Codable {
    /// Next business day.
    case tPlus1 = "T+1"
    /// Same business day.
    case tPlus0 = "T+0"
    /// Same calendar day.
    case dPlus0 = "D+0"
}

/// What a tier allows and limits. The three limits are whole MAJOR units of the merchant's base
/// currency, as RULES and the seed state them (starter: 10,000 CNY a payment, "单笔限额 1万");
/// `EffectiveLimits` scales them to minor units by the currency's exponent.
public struct TierPolicy: Sendable, Equatable {
    /// Major units of the base currency (10,000 = 10,000.00 CNY = 1,000,000 fen).
    public var singleLimit: Int64
    /// Major units of the base currency.
    public var dailyLimit: Int64
    /// Major units of the base currency.
    public var monthlyLimit: Int64
    /// Merchant fee rate in basis points (0.80% = 80).
    public var feeBasisPoints: Int64
    public var settlementCycle: SettlementCycle
    public var multiCurrency: Bool
    public var preAuthorization: Bool
    public var apiRequestsPerMinute: Int
    public var supportResponseHours: Int

    /// RULES.md "Merchant tiers", as data.
    public static let table: [Tier: TierPolicy] = [
        .starter: TierPolicy(singleLimit: 10_000, dailyLimit: 100_000, monthlyLimit: 300_000, feeBasisPoints: 80,
                             settlementCycle: .tPlus1, multiCurrency: false, preAuthorization: false,
                             apiRequestsPerMinute: 100, supportResponseHours: 24),
        .business: TierPolicy(singleLimit: 50_000, dailyLimit: 500_000, monthlyLimit: 1_500_000, feeBasisPoints: 60,
                              settlementCycle: .tPlus1, multiCurrency: true, preAuthorization: false,
                              apiRequestsPerMinute: 500, supportResponseHours: 12),
        .enterprise: TierPolicy(singleLimit: 200_000, dailyLimit: 2_000_000, monthlyLimit: 6_000_000, feeBasisPoints: 45,
                                settlementCycle: .tPlus0, multiCurrency: true, preAuthorization: true,
                                apiRequestsPerMinute: 2_000, supportResponseHours: 4),
        .premium: TierPolicy(singleLimit: 1_000_000, dailyLimit: 10_000_000, monthlyLimit: 30_000_000, feeBasisPoints: 30,
                             settlementCycle: .dPlus0, multiCurrency: true, preAuthorization: true,
                             apiRequestsPerMinute: 10_000, supportResponseHours: 1),
    ]

    /// The merchant fee for `amount`, half-up in integers.
    public func fee(for amount: Int64) -> Int64? { MoneyMath.basisPoints(amount, feeBasisPoints) }
}

/// Per-merchant limit overrides, in MINOR units of the base currency (as every amount on the
/// wire); a value set here wins over the tier's.
public struct LimitOverrides: Sendable, Codable, Equatable {
    public var singleLimit: Int64?
    public var dailyLimit: Int64?
    public var monthlyLimit: Int64?

    public init(singleLimit: Int64? = nil, dailyLimit: Int64? = nil, monthlyLimit: Int64? = nil) {
        self.singleLimit = singleLimit
        self.dailyLimit = dailyLimit
        self.monthlyLimit = monthlyLimit
    }

    enum CodingKeys: String, CodingKey {
        case singleLimit = "single_limit", dailyLimit = "daily_limit", monthlyLimit = "monthly_limit"
    }
}

/// The three limits in force for one merchant, in minor units of its base currency.
public struct EffectiveLimits: Sendable, Equatable {
    public var single: Int64
    public var daily: Int64
    public var monthly: Int64

    /// The tier's limits scaled from major to minor units of `currency` (starter in CNY: a single
    /// limit of 1,000,000 fen), each replaced by its override if the merchant has one.
    public init(tier: Tier, currency: Currency, overrides: LimitOverrides? = nil) {
        let policy = tier.policy, scale = currency.minorUnitsPerMajor
        // The largest tier limit (30,000,000) times the largest fiat scale (100) fits easily.
        single = overrides?.singleLimit ?? policy.singleLimit * scale
        daily = overrides?.dailyLimit ?? policy.dailyLimit * scale
        monthly = overrides?.monthlyLimit ?? policy.monthlyLimit * scale
    }

    public init(single: Int64, daily: Int64, monthly: Int64) {
        self.single = single
        self.daily = daily
        self.monthly = monthly
    }
}
