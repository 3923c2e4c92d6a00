import Foundation
import Payments
import Postgres

/// Versioned configuration documents in PostgreSQL (`settings`): the routing table and risk
/// rules. A write bumps the version; readers poll the version to reload within seconds.
public struct SettingsStore: Sendable {
    public static let routing = "routing"

    public init() {}

    /// The current routing configuration and its version (the defaults, version 0, until one is stored).
    public func routing(on connection: PostgresConnection) async throws -> (config: RoutingConfig, version: Int64) {
        guard let row = try await connection.query("SELECT value::text AS value, version FROM settings WHERE name = $1",
                                                   [Self.routing]).first else {
            return (.defaults, 0)
        }
        return (try StoreJSON.decode(RoutingConfig.self, from: try row.string("value")), try row.int64("version"))
    }

    /// The version of a document (0 when absent): one index lookup, for polling.
    public func version(of name: String, on connection: PostgresConnection) async throws -> Int64 {
        try await connection.query("SELECT version FROM settings WHERE name = $1", [name]).first?.int64("version") ?? 0
    }

    /// Replaces the routing configuration whole; returns the new version.
    @discardableResult
    public func setRouting(_ config: RoutingConfig, on connection: PostgresConnection) async throws -> Int64 {
        try await connection.query("""
            INSERT INTO settings (name, value) VALUES ($1, $2::jsonb)
            ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, version = settings.version + 1, updated_at = now()
            RETURNING version
            """, [Self.routing, try StoreJSON.encode(config)]).rows[0].int64("version")
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
            """, [Self.array(candidates.map(\.type.rawValue)), Self.array(candidates.map(\.value))]).rows
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

    /// A PostgreSQL text array literal, every element quoted and escaped.
    static func array(_ values: [String]) -> String {
        "{" + values.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
            .joined(separator: ",") + "}"
    }
}
