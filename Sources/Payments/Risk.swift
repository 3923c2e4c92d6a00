import Contract
import Foundation

/// What a blacklist entry matches on (CONTRACT §3).
public enum BlacklistType: String, Sendable, Codable, CaseIterable {
    case customerId = "customer_id", email, ip, country
}

/// One blacklist entry. Values are compared normalized: emails case-insensitively and trimmed,
/// countries upper-cased, the rest trimmed.
public struct BlacklistEntry: Sendable, Codable, Hashable {
    public var type: BlacklistType
    public var value: String

    public init(type: BlacklistType, value: String) {
        self.type = type
        self.value = Self.normalize(value, as: type)
    }

    public static func normalize(_ value: String, as type: BlacklistType) -> String {
        let trimmed = mayNeedTrimming(value) ? value.trimmingCharacters(in: .whitespacesAndNewlines) : value
        switch type {
        case .email: return trimmed.lowercased()
        case .country: return trimmed.uppercased()
        case .customerId, .ip: return trimmed
        }
    }

    /// False when both ends are printable ASCII, the usual case, in which trimming would change
    /// nothing; `trimmingCharacters` goes through `NSString` on every call (1% of the authorize
    /// worker's CPU, four values per payment).
    static func mayNeedTrimming(_ value: String) -> Bool {
        guard let first = value.utf8.first, let last = value.utf8.last else { return false }
        return !(0x21...0x7E).contains(first) || !(0x21...0x7E).contains(last)
    }
}

/// Risk rules: a maximum amount per currency, and a velocity limit per customer. A configuration
/// document (`settings.risk_rules`), as JSON:
/// `{"max_amount": {"USD": 500000}, "velocity_limit": 10, "velocity_window_seconds": 3600}`.
public struct RiskRules: Sendable, Codable, Equatable {
    /// Largest single payment per currency, in its minor units.
    public var maxAmount: [Currency: Int64]
    /// At most this many payments per customer within `velocityWindowSeconds` (nil: no limit).
    public var velocityLimit: Int?
    public var velocityWindowSeconds: Int

    public init(maxAmount: [Currency: Int64] = [:], velocityLimit: Int? = nil, velocityWindowSeconds: Int = 3_600) {
        self.maxAmount = maxAmount
        self.velocityLimit = velocityLimit
        self.velocityWindowSeconds = velocityWindowSeconds
    }

    enum CodingKeys: String, CodingKey {
        case maxAmount = "max_amount", velocityLimit = "velocity_limit", velocityWindowSeconds = "velocity_window_seconds"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        maxAmount = try container.decodeIfPresent([Currency: Int64].self, forKey: .maxAmount) ?? [:]
        velocityLimit = try container.decodeIfPresent(Int.self, forKey: .velocityLimit)
        velocityWindowSeconds = try container.decodeIfPresent(Int.self, forKey: .velocityWindowSeconds) ?? 3_600
    }

    /// Every problem of the document, by field.
    public var validationErrors: [FieldError] {
        var errors: [FieldError] = []
        for (currency, maximum) in maxAmount.sorted(by: { $0.key.rawValue < $1.key.rawValue }) where maximum <= 0 {
            errors.append(FieldError("max_amount.\(currency.rawValue)", "must be a positive amount in minor units"))
        }
        if let limit = velocityLimit, limit < 1 { errors.append(FieldError("velocity_limit", "must be at least 1")) }
        if !(1...31 * 86_400).contains(velocityWindowSeconds) {
            errors.append(FieldError("velocity_window_seconds", "must be 1 second to 31 days"))
        }
        return errors
    }
}

/// The outcome of a risk check; a block names the rule or entry that decided it (`risk_events`).
public enum RiskDecision: Sendable, Equatable {
    case allow
    case block(rule: String, detail: String)
}

/// Decides whether a payment may proceed. Pure: the caller supplies the customer's recent count.
public struct RiskPolicy: Sendable, Equatable {
    public var blacklist: Set<BlacklistEntry>
    public var rules: RiskRules

    public init(blacklist: Set<BlacklistEntry> = [], rules: RiskRules = RiskRules()) {
        self.blacklist = blacklist
        self.rules = rules
    }

    /// `recentPayments`: the customer's payments within the velocity window, this one excluded.
    public func evaluate(_ request: PaymentRequest, recentPayments: Int = 0) -> RiskDecision {
        let candidates: [(BlacklistType, String?)] = [
            (.customerId, request.customer?.id), (.email, request.customer?.email), (.ip, request.customer?.ip),
            (.country, request.country),
        ]
        for (type, value) in candidates {
            guard let value, blacklist.contains(BlacklistEntry(type: type, value: value)) else { continue }
            return .block(rule: "blacklist.\(type.rawValue)", detail: "\(type.rawValue) is blacklisted")
        }
        if let maximum = rules.maxAmount[request.currency], request.amount > maximum {
            return .block(rule: "max_amount", detail: "over \(request.currency.format(maximum)) \(request.currency.rawValue)")
        }
        if let limit = rules.velocityLimit, request.customer?.id != nil, recentPayments >= limit {
            return .block(rule: "velocity", detail: "more than \(limit) payments in \(rules.velocityWindowSeconds) s")
        }
        return .allow
    }
}
