import Contract
import Foundation
import Payments
import Postgres

/// Merchants in PostgreSQL. API keys are stored as SHA-256 hashes and returned in clear only once.
public struct MerchantStore: Sendable {
    public init() {}

    static let columns = "merchant_id, name, tier, base_currency, country, auto_settlement, limit_overrides, created_at"

    /// Creates a merchant and its API key; the key is in the result and nowhere else.
    public func create(_ new: NewMerchant, on connection: PostgresConnection) async throws -> (merchant: Merchant, apiKey: String) {
        let apiKey = Identifiers.newAPIKey()
        let result = try await connection.query("""
            INSERT INTO merchants (merchant_id, name, tier, base_currency, country, auto_settlement, api_key_hash)
            VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING \(Self.columns)
            """, [Identifiers.newMerchantId(), new.name, new.tier.rawValue, new.baseCurrency.rawValue, new.country,
                  new.autoSettlement, MessageIds.sha256Hex(apiKey)])
        return (try Self.merchant(from: result.rows[0]), apiKey)
    }

    public func find(id: String, on connection: PostgresConnection) async throws -> Merchant? {
        try await connection.query("SELECT \(Self.columns) FROM merchants WHERE merchant_id = $1", [id])
            .first.map(Self.merchant(from:))
    }

    /// The merchant owning `apiKey`, or nil.
    public func authenticate(apiKey: String, on connection: PostgresConnection) async throws -> Merchant? {
        try await connection.query("SELECT \(Self.columns) FROM merchants WHERE api_key_hash = $1",
                                   [MessageIds.sha256Hex(apiKey)]).first.map(Self.merchant(from:))
    }

    static func merchant(from row: PostgresRow) throws -> Merchant {
        let tierText = try row.string("tier"), currencyText = try row.string("base_currency")
        guard let tier = Tier(rawValue: tierText), let currency = Currency(rawValue: currencyText) else {
            throw StoreError.corrupt("merchant \(try row.string("merchant_id")) has tier \(tierText), currency \(currencyText)")
        }
        let overrides = try row.optionalString("limit_overrides").map {
            try JSONDecoder().decode(LimitOverrides.self, from: Data($0.utf8))
        }
        return Merchant(merchantId: try row.string("merchant_id"), name: try row.string("name"), tier: tier,
                        baseCurrency: currency, country: try row.string("country"),
                        autoSettlement: try row.bool("auto_settlement"), limitOverrides: overrides,
                        createdAt: Timestamp.format(try row.date("created_at")))
    }
}

/// A stored value that does not decode: a bug or a hand edit, never user input.
public enum StoreError: Error, CustomStringConvertible {
    case corrupt(String)
    public var description: String {
        switch self {
        case .corrupt(let what): "corrupt row: \(what)"
        }
    }
}

/// Tier changes, with the operator and reason in `audit_logs` (RULES "Merchant tiers").
extension MerchantStore {
    /// Sets the merchant's tier and records who did it and why, in the caller's transaction.
    /// Returns the merchant before and after, or nil when there is no such merchant.
    public func changeTier(merchantId: String, to tier: Tier, operator: String, reason: String,
                           on connection: PostgresConnection) async throws -> (before: Merchant, after: Merchant)? {
        guard let before = try await connection.query("SELECT \(Self.columns) FROM merchants WHERE merchant_id = $1 FOR UPDATE",
                                                      [merchantId]).first.map(Self.merchant(from:)) else { return nil }
        let after = try await connection.query("""
            UPDATE merchants SET tier = $2, updated_at = now() WHERE merchant_id = $1 RETURNING \(Self.columns)
            """, [merchantId, tier.rawValue]).rows[0]
        _ = try await connection.query("""
            INSERT INTO audit_logs (action, target, operator, reason, detail) VALUES ('merchant.tier_changed', $1, $2, $3, $4::jsonb)
            """, [merchantId, `operator`, reason, try CanonicalJSON.encode(["from": before.tier.rawValue, "to": tier.rawValue])])
        return (before, try Self.merchant(from: after))
    }

    /// Volume of succeeded payments (base currency) and `limit_exceeded` failures over the last 30 days.
    public func trailing30Days(merchantId: String, on connection: PostgresConnection) async throws -> (volume: Int64, limitExceeded: Int) {
        let row = try await connection.query("""
            SELECT coalesce(sum(amount_base) FILTER (WHERE status IN ('succeeded', 'partially_refunded', 'refunded')), 0) AS volume,
                   count(*) FILTER (WHERE failure_code = 'limit_exceeded') AS rejected
            FROM payments WHERE merchant_id = $1 AND created_at > now() - interval '30 days'
            """, [merchantId]).rows[0]
        return (try row.int64("volume"), try row.int("rejected"))
    }
}
