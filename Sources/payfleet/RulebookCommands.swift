import ArgumentParser
import Fleet
import Foundation
import Payments
import Logging
import Postgres
import Redis
import Store

/// Opens a pool for one CLI command and closes it after.
func withDatabase<T: Sendable>(_ connections: ConnectionOptions, _ body: (PostgresPool) async throws -> T) async throws -> T {
    let logger = FleetLogging.bootstrap(level: connections.logLevel, label: "payfleet")
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
            let changed = try await withDatabase(connections) { pool in
                let redis = try RedisClient(url: connections.redisURL, poolSize: 1, logger: Logger(label: "payfleet"))
                do {
                    let changed = try await TierChange.apply(merchantId: merchantId, to: tier, operator: operatorName, reason: reason,
                                                             source: "/payfleet/cli", pool: pool, redis: redis)
                    await redis.close()
                    return changed
                } catch {
                    await redis.close()
                    throw error
                }
            }
            guard let changed else { throw ValidationError("no merchant \(merchantId)") }
            print("\(changed.merchantId) is now \(changed.tier.rawValue)")
        }
    }
}

/// `payfleet routing get|set`: the routing table every worker reloads within seconds.
struct RoutingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "routing", abstract: "The channel table and routing settings.",
                                                    subcommands: [Get.self, Set.self])

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the routing configuration (JSON).")
        @OptionGroup var connections: ConnectionOptions
        func run() async throws {
            let (config, version) = try await withDatabase(connections) { pool in
                try await pool.withConnection { try await SettingsStore().routing(on: $0) }
            }
            print(try StoreJSON.encode(config))
            FileHandle.standardError.write(Data("version \(version)\n".utf8))
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Replace the routing configuration with a JSON file (validated first).")
        @OptionGroup var connections: ConnectionOptions
        @Argument(help: "A JSON file, as `routing get` prints it, or - for standard input.") var file: String

        func run() async throws {
            let data = file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: file))
            let config: RoutingConfig
            do { config = try JSONDecoder().decode(RoutingConfig.self, from: data) } catch {
                throw ValidationError("not a routing configuration: \(CommandWorker.describe(error))")
            }
            let errors = config.validationErrors
            guard errors.isEmpty else { throw ValidationError(errors.map(\.description).joined(separator: "\n")) }
            let version = try await withDatabase(connections) { pool in
                try await pool.withConnection { try await SettingsStore().setRouting(config, on: $0) }
            }
            print("routing configuration version \(version)")
        }
    }
}

/// `payfleet blacklist add|remove`: risk blacklist entries; they apply to the next payment.
struct BlacklistCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "blacklist", abstract: "The risk blacklist.",
                                                    subcommands: [Add.self, Remove.self])

    struct Entry: ParsableArguments {
        @Option(help: "customer_id, email, ip or country.") var type: String
        @Option(help: "The value to match.") var value: String
        func entry() throws -> BlacklistEntry {
            guard let type = BlacklistType(rawValue: type) else { throw ValidationError("unknown type \(type)") }
            return BlacklistEntry(type: type, value: value)
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add an entry.")
        @OptionGroup var connections: ConnectionOptions
        @OptionGroup var entry: Entry
        func run() async throws {
            let entry = try self.entry.entry()
            try await withDatabase(connections) { pool in try await pool.withConnection { try await RiskStore().add(entry, on: $0) } }
            print("blacklisted \(entry.type.rawValue) \(entry.value)")
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an entry.")
        @OptionGroup var connections: ConnectionOptions
        @OptionGroup var entry: Entry
        func run() async throws {
            let entry = try self.entry.entry()
            let removed = try await withDatabase(connections) { pool in
                try await pool.withConnection { try await RiskStore().remove(entry, on: $0) }
            }
            print(removed ? "removed \(entry.type.rawValue) \(entry.value)" : "no such entry")
        }
    }
}
