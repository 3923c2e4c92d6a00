import Contract
import Foundation
import Payments
import Postgres
import Redis

/// Configuration documents and the risk blacklist, read through the shared cache and written
/// through PostgreSQL (RULES "Caching": configuration 5 min, risk rules and blacklist 10-30 min,
/// FX 1 h). Every write invalidates its entry after it committed, so it applies to the very next
/// read on every replica, not after the TTL.
public struct Configuration: Sendable {
    public let cache: CacheAside
    let settings = SettingsStore()
    let risk = RiskStore()

    public init(redis: RedisClient) { cache = CacheAside(redis: redis) }

    static func settingKey(_ name: String) -> String { "pf:setting:{\(name)}" }
    static func blacklistKey(_ entry: BlacklistEntry) -> String {
        "pf:risk:bl:\(entry.type.rawValue):\(MessageIds.sha256Hex(entry.value))"
    }

    // MARK: - Documents

    /// A document and its version (0: the defaults, none stored), loading through `connection` on a miss.
    public func document<Value>(_ document: SettingsDocument<Value>, on connection: PostgresConnection) async throws
        -> (value: Value, version: Int64) {
        try decode(document, try await cachedEntry(document, read: await cache.read([Self.settingKey(document.name)])?.first) {
            try await settings.raw(document.name, on: connection)
        })
    }

    /// A document and its version, taking a connection from `pool` only on a miss.
    public func document<Value>(_ document: SettingsDocument<Value>, pool: PostgresPool) async throws -> (value: Value, version: Int64) {
        try decode(document, try await cachedEntry(document, pool: pool))
    }

    /// Only a document's version, for polling: the cached entry is read, its JSON is not decoded.
    public func version<Value>(of document: SettingsDocument<Value>, pool: PostgresPool) async throws -> Int64 {
        try Self.split(document, try await cachedEntry(document, pool: pool)).version
    }

    private func cachedEntry<Value>(_ document: SettingsDocument<Value>, pool: PostgresPool) async throws -> String {
        try await cachedEntry(document, read: await cache.read([Self.settingKey(document.name)])?.first) {
            try await pool.withConnection { try await settings.raw(document.name, on: $0) }
        }
    }

    /// Validates and stores a document, then invalidates its cached entry. Returns the new version.
    public func set<Value>(_ document: SettingsDocument<Value>, to value: Value, pool: PostgresPool) async throws -> Int64 {
        let errors = document.validate(value)
        guard errors.isEmpty else { throw ValidationFailure(errors) }
        let json = try CanonicalJSON.encode(value)
        let version = try await pool.withConnection { try await settings.set(document.name, json: json, on: $0) }
        try await cache.invalidate([Self.settingKey(document.name)])
        return version
    }

    /// The cached entry is `<version>\n<json>`; a document never stored is cached as its defaults,
    /// version 0. `read`: the entry as already read (nil: the cache was unreachable).
    private func cachedEntry<Value>(_ document: SettingsDocument<Value>, read: CacheAside.Read?,
                                    load: () async throws -> (json: String, version: Int64)?) async throws -> String {
        let entry = try await cache.value(from: read, ttl: document.ttl) {
            guard let stored = try await load() else { return "0\n" + (try CanonicalJSON.encode(document.defaults)) }
            return "\(stored.version)\n\(stored.json)"
        }
        guard let entry else { throw ConfigurationError.malformedCacheEntry(document.name) }
        return entry
    }

    private static func split<Value>(_ document: SettingsDocument<Value>, _ entry: String) throws -> (version: Int64, json: Substring) {
        guard let newline = entry.firstIndex(of: "\n"), let version = Int64(entry[..<newline]) else {
            throw ConfigurationError.malformedCacheEntry(document.name)
        }
        return (version, entry[entry.index(after: newline)...])
    }

    private func decode<Value>(_ document: SettingsDocument<Value>, _ entry: String) throws -> (value: Value, version: Int64) {
        let (version, json) = try Self.split(document, entry)
        return (try cache.decode(Value.self, from: String(json)), version)
    }

    // MARK: - Risk

    /// The risk policy for a payment: the rules, and which of its candidate entries are blacklisted.
    /// One cache round trip when everything is cached; misses load through `connection` in one query.
    public func riskPolicy(for candidates: [BlacklistEntry], on connection: PostgresConnection) async throws -> RiskPolicy {
        try await riskPolicy(for: candidates, reads: await cache.read(riskKeys(for: candidates)), on: connection)
    }

    /// The cache keys a payment's risk check reads: the rules, then each candidate's entry.
    public func riskKeys(for candidates: [BlacklistEntry]) -> [String] {
        [Self.settingKey(SettingsDocument<RiskRules>.riskRules.name)] + candidates.map(Self.blacklistKey)
    }

    /// `riskPolicy` from reads of `riskKeys` already made (with others, in one round trip; nil
    /// when the cache was unreachable).
    public func riskPolicy(for candidates: [BlacklistEntry], reads: [CacheAside.Read]?, on connection: PostgresConnection) async throws
        -> RiskPolicy {
        let rules = try decode(.riskRules, try await cachedEntry(.riskRules, read: reads?[0]) {
            try await settings.raw(SettingsDocument<RiskRules>.riskRules.name, on: connection)
        }).value
        var blacklisted: Set<BlacklistEntry> = []
        var missing: [Int] = []
        for index in candidates.indices {
            switch reads?[index + 1].value {
            case "1": blacklisted.insert(candidates[index])
            case "0": break
            default: missing.append(index)
            }
        }
        if !missing.isEmpty {
            let listed = try await risk.matching(missing.map { candidates[$0] }, on: connection)
            blacklisted.formUnion(listed)
            if let reads {
                await cache.fill(missing.map { (reads[$0 + 1], listed.contains(candidates[$0]) ? "1" : "0") }, ttl: .risk)
            }
        }
        return RiskPolicy(blacklist: blacklisted, rules: rules)
    }

    public func addToBlacklist(_ entry: BlacklistEntry, pool: PostgresPool) async throws {
        try await pool.withConnection { try await risk.add(entry, on: $0) }
        try await cache.invalidate([Self.blacklistKey(entry)])
    }

    /// Returns whether the entry existed.
    @discardableResult
    public func removeFromBlacklist(_ entry: BlacklistEntry, pool: PostgresPool) async throws -> Bool {
        let removed = try await pool.withConnection { try await risk.remove(entry, on: $0) }
        try await cache.invalidate([Self.blacklistKey(entry)])
        return removed
    }
}

/// The shared cache holds something for a setting that is not `<version>\n<json>`.
public enum ConfigurationError: Error, CustomStringConvertible {
    case malformedCacheEntry(String)
    public var description: String {
        switch self {
        case .malformedCacheEntry(let name): "malformed cache entry for setting \(name)"
        }
    }
}
