/// Upgrade (or downgrade) advice with its reason (CONTRACT §3 tier advice).
public struct TierAdvice: Sendable, Codable, Equatable {
    public var currentTier: Tier
    public var recommendedTier: Tier
    public var reason: String

    enum CodingKeys: String, CodingKey {
        case currentTier = "current_tier", recommendedTier = "recommended_tier", reason
    }

    /// RULES: the lowest tier whose monthly limit covers 1.25 x the trailing 30 days' volume, or the
    /// next tier up once the merchant hit `limit_exceeded` 3 or more times in 30 days (the higher
    /// of the two wins). Volume is in minor units of the merchant's base `currency`; the tiers'
    /// monthly limits (major units) are scaled to it before they are compared.
    public static func advise(current: Tier, currency: Currency, trailing30DayVolume volume: Int64,
                              limitExceeded30Days: Int) -> TierAdvice {
        // 1.25 x volume, rounded up, in integers.
        let needed = volume / 4 * 5 + ((volume % 4) * 5 + 3) / 4
        let byVolume = Tier.allCases.first { EffectiveLimits(tier: $0, currency: currency).monthly >= needed } ?? .premium
        let byRejections: Tier? = limitExceeded30Days >= 3 ? (current.next ?? current) : nil
        if let byRejections, byRejections > byVolume {
            return TierAdvice(currentTier: current, recommendedTier: byRejections,
                              reason: "limit_exceeded \(limitExceeded30Days) times in 30 days")
        }
        let reason: String
        if byVolume == current {
            reason = "the \(current.rawValue) monthly limit covers 1.25 x the last 30 days' volume"
        } else if byVolume > current {
            reason = "1.25 x the last 30 days' volume (\(currency.format(needed)) \(currency.rawValue)) is over the \(current.rawValue) monthly limit"
        } else {
            reason = "the \(byVolume.rawValue) monthly limit already covers 1.25 x the last 30 days' volume"
        }
        return TierAdvice(currentTier: current, recommendedTier: byVolume, reason: reason)
    }
}
