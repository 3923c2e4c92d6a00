import Contract
import Foundation
import Payments
import Postgres

/// A configuration document of `settings`: its name, how long the shared cache keeps it, its value
/// while none is stored, and its validation.
public struct SettingsDocument<Value: Codable & Sendable>: Sendable {
    public let name: String
    public let ttl: CacheAside.TTL
    public let defaults: Value
    public let validate: @Sendable (Value) -> [FieldError]

    public init(name: String, ttl: CacheAside.TTL, defaults: Value, validate: @escaping @Sendable (Value) -> [FieldError]) {
        self.name = name
        self.ttl = ttl
        self.defaults = defaults
        self.validate = validate
    }
}

extension SettingsDocument where Value == RoutingConfig {
    /// The channel table and routing settings (RULES "Routing"); configuration: cached 5 min.
    public static var routing: Self { Self(name: "routing", ttl: .configuration, defaults: .defaults, validate: { $0.validationErrors }) }
}

extension SettingsDocument where Value == RiskRules {
    /// Maximum amount per currency and velocity per customer (RULES "Risk"); cached 10-30 min.
    public static var riskRules: Self { Self(name: "risk_rules", ttl: .risk, defaults: RiskRules(), validate: { $0.validationErrors }) }
}

extension SettingsDocument where Value == FXTable {
    /// Exchange rates for limit checks, over the defaults of every currency (RULES); cached 1 h.
    public static var fx: Self { Self(name: "fx", ttl: .fx, defaults: .defaults, validate: { $0.validationErrors }) }
}

extension SettingsDocument where Value == BusinessCalendar {
    /// The business days settlement pays out on (RULES "Settlement": Monday to Friday less a
    /// holiday list); configuration: cached 5 min, invalidated on write.
    public static var businessCalendar: Self { Self(name: "business_calendar", ttl: .configuration, defaults: .standard, validate: { _ in [] }) }
}

/// Versioned configuration documents in PostgreSQL (`settings`). Read them through
/// `Configuration`, which caches them; a write bumps the version.
public struct SettingsStore: Sendable {
    public init() {}

    /// A document's JSON and version, or nil when none is stored.
    public func raw(_ name: String, on connection: PostgresConnection) async throws -> (json: String, version: Int64)? {
        guard let row = try await connection.query("SELECT value::text AS value, version FROM settings WHERE name = $1",
                                                   [name]).first else { return nil }
        return (try row.string("value"), try row.int64("version"))
    }

    /// Replaces a document whole; returns its new version.
    public func set(_ name: String, json: String, on connection: PostgresConnection) async throws -> Int64 {
        try await connection.query("""
            INSERT INTO settings (name, value) VALUES ($1, $2::jsonb)
            ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, version = settings.version + 1, updated_at = now()
            RETURNING version
            """, [name, json]).rows[0].int64("version")
    }
}

/// The risk blacklist and the risk events it causes.
public struct RiskStore: Sendable {
    public init() {}

    public func add(_ entry: BlacklistEntry, on connection: PostgresConnection) async throws {
        _ = try await connection.query("INSERT INTO risk_blacklist (type, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                                       [entry.type.rawValue, entry.value])
    }

    /// Returns whether the entry existed.
    @discardableResult
    public func remove(_ entry: BlacklistEntry, on connection: PostgresConnection) async throws -> Bool {
        try await connection.query("DELETE FROM risk_blacklist WHERE type = $1 AND value = $2",
                                   [entry.type.rawValue, entry.value]).affectedRows > 0
    }

    /// The entries among `candidates` that are blacklisted (one query, whatever the count).
    public func matching(_ candidates: [BlacklistEntry], on connection: PostgresConnection) async throws -> Set<BlacklistEntry> {
        guard !candidates.isEmpty else { return [] }
        let rows = try await connection.query("""
            SELECT type, value FROM risk_blacklist WHERE (type, value) IN (SELECT * FROM unnest($1::text[], $2::text[]))
            """, [PostgresArray.text(candidates.map(\.type.rawValue)), PostgresArray.text(candidates.map(\.value))]).rows
        var found: Set<BlacklistEntry> = []
        for row in rows {
            guard let type = BlacklistType(rawValue: try row.string("type")) else { continue }
            found.insert(BlacklistEntry(type: type, value: try row.string("value")))
        }
        return found
    }

    /// The statement that records a risk hit (written with the failed payment).
    public func event(merchantId: String, paymentNo: String, rule: String, detail: String) -> PostgresStatement {
        PostgresStatement("INSERT INTO risk_events (merchant_id, payment_no, rule, detail) VALUES ($1, $2, $3, $4)",
                          [merchantId, paymentNo, rule, detail])
    }
}
