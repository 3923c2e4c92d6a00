import Contract
import Fleet
import Foundation
import Payments
import Postgres
import Redis
import Store

/// A merchant's tier change, the same whoever makes it (the admin route, the CLI): the new tier,
/// the `audit_logs` row and the `merchant.tier_changed` event commit in one transaction; then the
/// cached merchant is dropped, so the next payment on every replica sees the new tier.
public enum TierChange {
    /// Returns the merchant after the change, or nil when there is no such merchant.
    public static func apply(merchantId: String, to tier: Tier, operator operatorName: String, reason: String, source: String,
                             pool: PostgresPool, redis: RedisClient, clock: WallClock = .system) async throws -> Merchant? {
        let changed = try await pool.transaction { tx -> Merchant? in
            guard let (_, after) = try await MerchantStore().changeTier(merchantId: merchantId, to: tier, operator: operatorName,
                                                                        reason: reason, on: tx) else { return nil }
            let event = Event(type: "merchant.tier_changed", merchantId: after.merchantId, resourceKey: "merchant:\(after.merchantId)",
                              data: after)
            _ = try await tx.batch([try Outbox.statement(for: event, eventId: MessageIds.newCommandId(), source: source,
                                                          at: clock.now)])
            return after
        }
        if changed != nil { try await MerchantCache(redis: redis).invalidate(merchantId) }
        return changed
    }
}
