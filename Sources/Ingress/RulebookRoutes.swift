import Contract
import Fleet
import Foundation
import Hummingbird
import Payments
import PaymentServices
import Postgres
import Store

/// Merchant profile, limits and tier advice; the admin's tier changes, routing table and risk
/// blacklist (CONTRACT §4). Writes go through `Configuration`, which invalidates the shared cache
/// at once: a blacklist entry applies to the very next payment, and workers reload the routing
/// table within about a second.
extension IngressApp {
    func addRulebookRoutes(to router: Router<IngressContext>) {
        let api = router.group("api/v1")
        api.get("merchant") { request, _ in
            Self.json(.ok, try CanonicalJSON.encode(try await self.authenticate(request))).response
        }
        api.get("merchant/limits") { request, _ in try await self.limits(request) }
        api.get("merchant/tier/recommendation") { request, _ in
            let merchant = try await self.authenticate(request)
            let trailing = try await self.pool.withConnection {
                try await self.merchants.trailing30Days(merchantId: merchant.merchantId, on: $0)
            }
            let advice = TierAdvice.advise(current: merchant.tier, currency: merchant.baseCurrency, trailing30DayVolume: trailing.volume,
                                           limitExceeded30Days: trailing.limitExceeded)
            return Self.json(.ok, try CanonicalJSON.encode(advice)).response
        }
        api.put("admin/merchants/:id/tier") { request, context in
            try await self.changeTier(request, merchantId: try context.parameters.require("id"))
        }
        api.get("admin/routing") { request, _ in
            try self.requireAdmin(request)
            let (config, _) = try await Configuration(redis: self.redis).document(.routing, pool: self.pool)
            return Self.json(.ok, try CanonicalJSON.encode(config)).response
        }
        api.put("admin/routing") { request, _ in try await self.replaceRouting(request) }
        api.post("admin/risk/blacklist") { request, _ in
            let entry = try await self.blacklistEntry(request)
            try await Configuration(redis: self.redis).addToBlacklist(entry, pool: self.pool)
            return Self.json(.created, try CanonicalJSON.encode(entry)).response
        }
        api.delete("admin/risk/blacklist") { request, _ in
            let entry = try await self.blacklistEntry(request)
            guard try await Configuration(redis: self.redis).removeFromBlacklist(entry, pool: self.pool) else {
                throw Problem(.notFound, "not_found", "no such blacklist entry")
            }
            return Response(status: .noContent)
        }
    }

    /// `{"tier", "currency", "single_limit", "daily": {...}, "monthly": {...}}` in base-currency minor units.
    func limits(_ request: Request) async throws -> Response {
        let merchant = try await authenticate(request)
        let ledger = LimitLedger(redis: redis), windows = LimitWindows(at: Date())
        // After Redis lost the counters, show what PostgreSQL records rather than zero.
        if try await !ledger.isLoaded(merchantId: merchant.merchantId, windows: windows) {
            try await LimitRecord(ledger: ledger, pool: pool).rebuild(merchantId: merchant.merchantId, windows: windows)
        }
        let usage = try await ledger.usage(merchantId: merchant.merchantId, windows: windows)
        struct Window: Encodable { let limit: Int64, used: Int64, remaining: Int64 }
        struct Limits: Encodable {
            let tier: Tier, currency: Currency, singleLimit: Int64, daily: Window, monthly: Window
            enum CodingKeys: String, CodingKey { case tier, currency, singleLimit = "single_limit", daily, monthly }
        }
        let limits = merchant.limits
        func window(_ limit: Int64, _ used: Int64) -> Window { Window(limit: limit, used: used, remaining: max(0, limit - used)) }
        return Self.json(.ok, try CanonicalJSON.encode(Limits(tier: merchant.tier, currency: merchant.baseCurrency, singleLimit: limits.single,
                                                          daily: window(limits.daily, usage.day),
                                                          monthly: window(limits.monthly, usage.month)))).response
    }

    /// `{"tier", "reason", "operator"}`: recorded in `audit_logs`, announced as `merchant.tier_changed`.
    func changeTier(_ request: Request, merchantId: String) async throws -> Response {
        try requireAdmin(request)
        var request = request
        guard case .object(let body) = try await readJSON(&request) else {
            throw Problem(.badRequest, "invalid_request", "the body must be a JSON object")
        }
        var errors: [FieldError] = []
        func text(_ name: String, max: Int) -> String? {
            guard case .string(let value)? = body[name], !value.isEmpty, value.count <= max, TextRules.isPrintable(value) else {
                errors.append(FieldError(name, "is required: 1-\(max) printable characters"))
                return nil
            }
            return value
        }
        let tierName = text("tier", max: 20), reason = text("reason", max: 500), operatorName = text("operator", max: 100)
        let tier = tierName.flatMap(Tier.init(rawValue:))
        if tierName != nil, tier == nil {
            errors.append(FieldError("tier", "must be one of \(Tier.allCases.map(\.rawValue).joined(separator: ", "))"))
        }
        guard errors.isEmpty, let tier, let reason, let operatorName else { throw Problem.invalid(ValidationFailure(errors)) }

        let changed = try await TierChange.apply(merchantId: merchantId, to: tier, operator: operatorName, reason: reason,
                                                 source: "/payfleet/ingress", pool: pool, redis: redis)
        guard let changed else { throw Problem(.notFound, "not_found", "no merchant \(TextRules.forLog(merchantId, limit: 64))") }
        relay.notify()
        logger.notice("tier changed", metadata: ["merchant_id": "\(merchantId)", "tier": "\(tier.rawValue)", "operator": "\(operatorName)"])
        return Self.json(.ok, try CanonicalJSON.encode(changed)).response
    }

    /// Replaces the routing table whole; a bad document gets 400 and changes nothing.
    func replaceRouting(_ request: Request) async throws -> Response {
        try requireAdmin(request)
        var request = request
        let json = try await readJSON(&request)
        let config: RoutingConfig
        do {
            config = try JSONDecoder().decode(RoutingConfig.self, from: Data(try CanonicalJSON.encode(json).utf8))
        } catch {
            throw Problem(.badRequest, "invalid_request", "not a routing configuration: \(CommandWorker.describe(error))")
        }
        let version: Int64
        do { version = try await Configuration(redis: redis).set(.routing, to: config, pool: pool) } catch let failure as ValidationFailure {
            throw Problem.invalid(failure)
        }
        logger.notice("routing configuration replaced", metadata: ["version": "\(version)"])
        return Self.json(.ok, try CanonicalJSON.encode(config)).response
    }

    func blacklistEntry(_ request: Request) async throws -> BlacklistEntry {
        try requireAdmin(request)
        var request = request
        guard case .object(let body) = try await readJSON(&request),
              case .string(let typeName)? = body["type"], let type = BlacklistType(rawValue: typeName),
              case .string(let value)? = body["value"], !value.isEmpty, value.count <= 254, TextRules.isPrintable(value) else {
            throw Problem(.badRequest, "invalid_request",
                          "send {\"type\": one of customer_id, email, ip, country, \"value\": 1-254 printable characters}")
        }
        return BlacklistEntry(type: type, value: value)
    }
}
