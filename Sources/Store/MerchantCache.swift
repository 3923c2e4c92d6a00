import Foundation
import Payments
import Redis

/// Cache-aside for merchants in Redis (RULES "Caching": merchant 1 h), shared by every replica, so
/// a write that invalidates an entry (a tier change) applies to the very next request everywhere.
/// A miss, or an unreachable cache, falls back to the loader: the database stays the truth.
public struct MerchantCache: Sendable {
    public let redis: RedisClient
    public var ttlSeconds = 3_600

    public init(redis: RedisClient) { self.redis = redis }

    /// What is cached: the resource plus the limit overrides it does not show.
    struct Entry: Codable {
        let merchant: Merchant
        let limitOverrides: LimitOverrides?
    }

    static func key(_ merchantId: String) -> String { "pf:merchant:{\(merchantId)}" }
    static func apiKeyKey(_ hash: String) -> String { "pf:apikey:\(hash)" }

    /// The merchant, from the cache or else from `load` (then cached).
    public func merchant(id: String, load: () async throws -> Merchant?) async throws -> Merchant? {
        if let text = try? await redis.command(["GET", Self.key(id)]).string,
           let entry = try? StoreJSON.decode(Entry.self, from: text) {
            var merchant = entry.merchant
            merchant.limitOverrides = entry.limitOverrides
            return merchant
        }
        guard let merchant = try await load() else { return nil }
        let entry = Entry(merchant: merchant, limitOverrides: merchant.limitOverrides)
        _ = try? await redis.command(["SET", Self.key(id), try StoreJSON.encode(entry), "EX", String(ttlSeconds)])
        return merchant
    }

    /// The merchant owning an API key (by the key's hash), through the cache.
    public func merchant(apiKeyHash: String, load: () async throws -> Merchant?) async throws -> Merchant? {
        if let id = try? await redis.command(["GET", Self.apiKeyKey(apiKeyHash)]).string {
            return try await merchant(id: id, load: load)
        }
        guard let merchant = try await load() else { return nil }
        _ = try? await redis.command(["SET", Self.apiKeyKey(apiKeyHash), merchant.merchantId, "EX", String(ttlSeconds)])
        let entry = Entry(merchant: merchant, limitOverrides: merchant.limitOverrides)
        _ = try? await redis.command(["SET", Self.key(merchant.merchantId), try StoreJSON.encode(entry), "EX", String(ttlSeconds)])
        return merchant
    }

    /// Drops a merchant's entry after a write; the next read loads it from the database.
    public func invalidate(_ merchantId: String) async throws {
        _ = try await redis.command(["DEL", Self.key(merchantId)])
    }
}
