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
        let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
        switch type {
        case .email: return trimmed.lowercased()
        case .country: return trimmed.uppercased()
        case .customerId, .ip: return trimmed
        }
    }
}

/// Risk rules: a maximum amount per currency, and a velocity limit per customer.
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
