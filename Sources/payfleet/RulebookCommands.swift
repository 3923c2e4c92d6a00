import ArgumentParser
import Contract
import Fleet
import Foundation
import Logging
import Payments
import PaymentServices
import Postgres
import Redis
import Store

/// Opens a pool for one CLI command and closes it after.
func withDatabase<T: Sendable>(_ connections: ConnectionOptions, _ body: (PostgresPool) async throws -> T) async throws -> T {
    let logger = FleetLogging.bootstrap(level: connections.logLevel, label: "payfleet", format: connections.logFormat)
    let pool = PostgresPool(configuration: try PostgresConfiguration(url: connections.databaseURL), size: 1, logger: logger)
    do {
        let value = try await body(pool)
        await pool.close()
        return value
    } catch {
        await pool.close()
        throw error
    }
}

/// `payfleet merchant tier`: the admin route's tier change, from the command line.
struct MerchantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "merchant", abstract: "Merchants.", subcommands: [Tier.self])

    struct Tier: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a merchant's tier (recorded in audit_logs, announced as merchant.tier_changed).")
        @OptionGroup var connections: ConnectionOptions
        @Argument(help: "The merchant id.") var merchantId: String
        @Option(help: "starter, business, enterprise or premium.") var tier: String
        @Option(help: "Why.") var reason: String
        @Option(name: .customLong("operator"), help: "Who.") var operatorName: String

        func run() async throws {
            guard let tier = Payments.Tier(rawValue: tier) else { throw ValidationError("unknown tier \(tier)") }
            let changed = try await withStores(connections) { pool, redis in
                try await TierChange.apply(merchantId: merchantId, to: tier, operator: operatorName, reason: reason,
                                           source: "/payfleet/cli", pool: pool, redis: redis)
            }
            guard let changed else { throw ValidationError("no merchant \(merchantId)") }
            print("\(changed.merchantId) is now \(changed.tier.rawValue)")
        }
    }
}

/// Opens a pool and a Redis client for one CLI command and closes them after.
func withStores<T: Sendable>(_ connections: ConnectionOptions, _ body: (PostgresPool, RedisClient) async throws -> T) async throws -> T {
    try await withDatabase(connections) { pool in
        let redis = try RedisClient(url: connections.redisURL, poolSize: 1, logger: Logger(label: "payfleet"))
        do {
            let value = try await body(pool, redis)
            await redis.close()
            return value
        } catch {
            await redis.close()
            throw error
        }
    }
}

/// Prints a configuration document as JSON (its version on standard error).
func printDocument<Value>(_ document: SettingsDocument<Value>, _ connections: ConnectionOptions) async throws {
    let (value, version) = try await withStores(connections) { pool, redis in
        try await Configuration(redis: redis).document(document, pool: pool)
    }
    print(try CanonicalJSON.encode(value))
    FileHandle.standardError.write(Data("\(document.name) version \(version)\n".utf8))
}

/// Replaces a configuration document with a JSON file (validated first); every process sees it
/// within seconds, and the shared cache's entry is invalidated at once.
func replaceDocument<Value>(_ document: SettingsDocument<Value>, file: String, _ connections: ConnectionOptions) async throws {
    let data = file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: file))
    let value: Value
    do { value = try JSONDecoder().decode(Value.self, from: data) } catch {
        throw ValidationError("not a \(document.name) document: \(CommandWorker.describe(error))")
    }
    do {
        let version = try await withStores(connections) { pool, redis in
            try await Configuration(redis: redis).set(document, to: value, pool: pool)
        }
        print("\(document.name) version \(version)")
    } catch let failure as ValidationFailure {
        throw ValidationError(failure.errors.map(\.description).joined(separator: "\n"))
    }
}

/// `payfleet routing get|set`: the routing table every worker reloads within seconds.
struct RoutingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "routing", abstract: "The channel table and routing settings.",
                                                    subcommands: [Get.self, Set.self])

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the routing configuration (JSON).")
        @OptionGroup var connections: ConnectionOptions
        func run() async throws { try await printDocument(.routing, connections) }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Replace the routing configuration with a JSON file (validated first).")
        @OptionGroup var connections: ConnectionOptions
        @Argument(help: "A JSON file, as `routing get` prints it, or - for standard input.") var file: String
        func run() async throws { try await replaceDocument(.routing, file: file, connections) }
    }
}

/// `payfleet risk rules|set-rules|add|remove`: risk rules and the blacklist; they apply to the next payment.
struct RiskCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "risk", abstract: "Risk rules and the blacklist.",
                                                    subcommands: [Rules.self, SetRules.self, Add.self, Remove.self])

    struct Rules: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the risk rules (JSON): {\"max_amount\": {\"USD\": 500000}, \"velocity_limit\": 10, \"velocity_window_seconds\": 3600}.")
        @OptionGroup var connections: ConnectionOptions
        func run() async throws { try await printDocument(.riskRules, connections) }
    }

    struct SetRules: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-rules", abstract: "Replace the risk rules with a JSON file (validated first).")
        @OptionGroup var connections: ConnectionOptions
        @Argument(help: "A JSON file, as `risk rules` prints it, or - for standard input.") var file: String
        func run() async throws { try await replaceDocument(.riskRules, file: file, connections) }
    }

    struct Entry: ParsableArguments {
        @Option(help: "customer_id, email, ip or country.") var type: String
        @Option(help: "The value to match.") var value: String
        func entry() throws -> BlacklistEntry {
            guard let type = BlacklistType(rawValue: type) else { throw ValidationError("unknown type \(type)") }
            return BlacklistEntry(type: type, value: value)
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a blacklist entry.")
        @OptionGroup var connections: ConnectionOptions
        @OptionGroup var entry: Entry
        func run() async throws {
            let entry = try self.entry.entry()
            try await withStores(connections) { pool, redis in try await Configuration(redis: redis).addToBlacklist(entry, pool: pool) }
            print("blacklisted \(entry.type.rawValue) \(entry.value)")
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a blacklist entry.")
        @OptionGroup var connections: ConnectionOptions
        @OptionGroup var entry: Entry
        func run() async throws {
            let entry = try self.entry.entry()
            let removed = try await withStores(connections) { pool, redis in
                try await Configuration(redis: redis).removeFromBlacklist(entry, pool: pool)
            }
            print(removed ? "removed \(entry.type.rawValue) \(entry.value)" : "no such entry")
        }
    }
}

/// `payfleet fx get|set`: the exchange rates limit checks convert with (over the defaults).
struct FXCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fx", abstract: "The FX table for limit checks.",
                                                    subcommands: [Get.self, Set.self])

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the configured rates (JSON, USD per major unit x 10^8); unlisted currencies use the defaults.")
        @OptionGroup var connections: ConnectionOptions
        func run() async throws { try await printDocument(.fx, connections) }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Replace the configured rates with a JSON file (validated first).")
        @OptionGroup var connections: ConnectionOptions
        @Argument(help: "A JSON file: {\"usd_per_major_scaled\": {\"EUR\": 108000000}}, or - for standard input.") var file: String
        func run() async throws { try await replaceDocument(.fx, file: file, connections) }
    }
}
