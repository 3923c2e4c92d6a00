import ArgumentParser
import Fleet
import Foundation
import Logging
import Payments
import Postgres
import Redis
import Store

/// Routing decisions per second: the library alone, one thread, a mix of currencies, countries,
/// pay methods and modes over the default channel table with live stats.
struct RoutingDecisions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "routing", abstract: "Routing decisions per second (library alone, one thread).")
    @Option(help: "Decisions to make.") var decisions = 1_000_000

    func run() async throws {
        let router = ChannelRouter(config: .defaults)
        let inputs: [RoutingInput] = [
            RoutingInput(amount: 10_000, currency: .USD, country: "US", payMethod: .card, mode: .balanced),
            RoutingInput(amount: 52_000, currency: .CNY, country: "CN", payMethod: .wallet, mode: .cost),
            RoutingInput(amount: 7_500, currency: .EUR, country: "DE", payMethod: .card, mode: .success),
            RoutingInput(amount: 1_000, currency: .USDT, country: "SG", payMethod: .crypto, mode: .geographic),
            RoutingInput(amount: 99_999, currency: .GBP, country: "BR", payMethod: .wallet, mode: .balanced),
        ]
        let stats = ["stripe": ChannelStats(attempts: 500, successes: 470), "paypal": ChannelStats(attempts: 200, successes: 181),
                     "alipay": ChannelStats(attempts: 90, successes: 88)]
        var checksum = 0
        let started = ContinuousClock.now
        for index in 0..<decisions {
            let decision = router.decide(inputs[index % inputs.count], stats: stats, seed: UInt64(index))
            checksum &+= decision.channel?.utf8.count ?? 0
        }
        let elapsed = seconds(ContinuousClock.now - started)
        struct Result: Encodable { let decisions: Int; let per_second: Double; let checksum: Int }
        try printJSON(Result(decisions: decisions, per_second: Double(decisions) / elapsed, checksum: checksum))
    }
}

/// Limit reservations per second through Redis: the reserve script, from `concurrency` tasks, each
/// reservation a new command of one merchant with limits it never reaches.
struct LimitReservations: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "limits", abstract: "Limit reservations per second through the Redis script.")
    @OptionGroup var connections: ConnectionOptions
    @Option(help: "Reservations to make.") var reservations = 50_000
    @Option(help: "Reservations in flight at once (also the Redis connections).") var concurrency = 16

    func run() async throws {
        let logger = FleetLogging.bootstrap(level: connections.logLevel, label: "bench")
        let redis = try RedisClient(url: connections.redisURL, poolSize: concurrency, logger: logger)
        let ledger = LimitLedger(redis: redis)
        let merchant = "bench-limits-\(UUID().uuidString.prefix(8))"
        let windows = LimitWindows(at: Date())
        try await ledger.load(merchantId: merchant, windows: windows, day: 0, month: 0)
        let limits = EffectiveLimits(tier: .premium, currency: .USD, overrides: LimitOverrides(singleLimit: 1 << 40, dailyLimit: 1 << 60, monthlyLimit: 1 << 60))
        let perTask = reservations / concurrency
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<concurrency {
                group.addTask {
                    for index in 0..<perTask {
                        _ = try await ledger.reserve(merchantId: merchant, reservationKey: "\(task)-\(index)", amount: 1_000,
                                                     limits: limits, windows: windows)
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = seconds(ContinuousClock.now - started)
        let usage = try await ledger.usage(merchantId: merchant, windows: windows)
        await redis.close()
        guard usage.day == Int64(perTask * concurrency) * 1_000 else { throw ValidationError("counted \(usage.day), expected \(perTask * concurrency * 1_000)") }
        struct Result: Encodable { let reservations: Int; let per_second: Double; let script: String }
        try printJSON(Result(reservations: perTask * concurrency, per_second: Double(perTask * concurrency) / elapsed,
                             script: LimitLedger.reserveScriptSource))
    }
}

/// Merchant lookup latency, one at a time: through the Redis cache (hits), and from PostgreSQL.
struct MerchantLookup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "merchant-lookup", abstract: "Merchant lookup latency, cached and uncached.")
    @OptionGroup var connections: ConnectionOptions
    @Option(help: "Lookups of each kind.") var lookups = 5_000

    func run() async throws {
        let logger = FleetLogging.bootstrap(level: connections.logLevel, label: "bench")
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: connections.databaseURL), size: 1, logger: logger)
        let redis = try RedisClient(url: connections.redisURL, poolSize: 1, logger: logger)
        let store = MerchantStore(), cache = MerchantCache(redis: redis)
        let merchant = try await pool.withConnection { connection in
            try await store.create(NewMerchant(name: "bench lookup", tier: .business, baseCurrency: .USD, country: "US",
                                               autoSettlement: false), on: connection).merchant
        }
        func time(_ body: () async throws -> Payments.Merchant?) async throws -> [Duration] {
            var samples: [Duration] = []
            for _ in 0..<lookups {
                let started = ContinuousClock.now
                guard try await body()?.merchantId == merchant.merchantId else { throw ValidationError("lookup lost the merchant") }
                samples.append(ContinuousClock.now - started)
            }
            return samples
        }
        let uncached = try await time { try await pool.withConnection { try await store.find(id: merchant.merchantId, on: $0) } }
        _ = try await cache.merchant(id: merchant.merchantId) { merchant }
        let cached = try await time {
            try await cache.merchant(id: merchant.merchantId) { throw ValidationError("a cached lookup went to the database") }
        }
        await redis.close()
        await pool.close()
        struct Result: Encodable { let lookups: Int; let cached: Percentiles; let uncached: Percentiles }
        try printJSON(Result(lookups: lookups, cached: Percentiles(cached), uncached: Percentiles(uncached)))
    }
}
