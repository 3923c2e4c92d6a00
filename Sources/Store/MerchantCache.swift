import Contract
import Foundation
import Payments
import Redis

/// Merchants through the shared cache (RULES "Caching": merchant 1 h), so that a write that
/// invalidates an entry (a tier change) applies to the very next request on every replica.
public struct MerchantCache: Sendable {
    public let cache: CacheAside
    public var ttl = CacheAside.TTL.merchant

    public init(redis: RedisClient) { cache = CacheAside(redis: redis) }

    /// What is cached: the resource plus the limit overrides it does not show.
    struct Entry: Codable, Sendable {
        let merchant: Merchant
        let limitOverrides: LimitOverrides?
    }

    static func key(_ merchantId: String) -> String { "pf:merchant:{\(merchantId)}" }
    static func apiKeyKey(_ hash: String) -> String { "pf:apikey:\(hash)" }

    /// The merchant, from the cache or else from `load` (then cached).
    public func merchant(id: String, load: () async throws -> Merchant?) async throws -> Merchant? {
        try await merchant(id: id, read: await cache.read([Self.key(id)])?.first, load: load)
    }

    /// The cache key to read, with others in one round trip, for `merchant(id:read:load:)`.
    public static func cacheKey(_ merchantId: String) -> String { key(merchantId) }

    /// The merchant from a cache read already made (nil: the cache was unreachable), or else from `load`.
    public func merchant(id: String, read: CacheAside.Read?, load: () async throws -> Merchant?) async throws -> Merchant? {
        let text = try await cache.value(from: read, ttl: ttl) {
            guard let merchant = try await load() else { return nil }
            return try CanonicalJSON.encode(Entry(merchant: merchant, limitOverrides: merchant.limitOverrides))
        }
        guard let text else { return nil }
        let entry = try cache.decode(Entry.self, from: text)
        var merchant = entry.merchant
        merchant.limitOverrides = entry.limitOverrides
        return merchant
    }

    /// The merchant owning an API key (by the key's hash), through the cache. The key-to-merchant
    /// mapping never changes, so only the merchant's own entry is ever invalidated.
    public func merchant(apiKeyHash: String, load: () async throws -> Merchant?) async throws -> Merchant? {
        let id = try await cache.value(Self.apiKeyKey(apiKeyHash), ttl: ttl) {
            try await loadAndCache(load)?.merchantId
        }
        guard let id else { return nil }
        return try await merchant(id: id, load: load)
    }

    private func loadAndCache(_ load: () async throws -> Merchant?) async throws -> Merchant? {
        guard let merchant = try await load() else { return nil }
        return try await self.merchant(id: merchant.merchantId) { merchant }
    }

    /// Drops a merchant's entry after a write; the next read loads it from the database.
    public func invalidate(_ merchantId: String) async throws {
        try await cache.invalidate([Self.key(merchantId)])
    }
}
