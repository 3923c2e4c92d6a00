import AMQP
import ArgumentParser
import Foundation
import Logging

/// Reads an environment variable, treating an empty value as unset.
public func environment(_ name: String) -> String? {
    guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
    return value
}

/// Where the servers are. Every executable takes these flags; each defaults to its environment
/// variable, then to the local stack's address.
public struct ConnectionOptions: ParsableArguments, Sendable {
    @Option(name: .customLong("amqp-url"), help: "RabbitMQ URL (env PAYFLEET_AMQP_URL).")
    public var amqpURL: String = environment("PAYFLEET_AMQP_URL") ?? "amqp://payfleet:payfleet@127.0.0.1:5672/%2F"

    @Option(name: .customLong("database-url"), help: "PostgreSQL URL (env PAYFLEET_DATABASE_URL).")
    public var databaseURL: String = environment("PAYFLEET_DATABASE_URL") ?? "postgres://payfleet:payfleet@127.0.0.1:5432/payfleet"

    @Option(name: .customLong("redis-url"), help: "Redis URL (env PAYFLEET_REDIS_URL).")
    public var redisURL: String = environment("PAYFLEET_REDIS_URL") ?? "redis://127.0.0.1:6379/0"

    @Option(name: .customLong("topology"), help: "RabbitMQ definitions file to declare at start (env PAYFLEET_TOPOLOGY; default: topology/definitions.json found next to the executable or in the working directory).")
    public var topologyPath: String = environment("PAYFLEET_TOPOLOGY") ?? ""

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (env PAYFLEET_LOG_LEVEL).")
    public var logLevel: String = environment("PAYFLEET_LOG_LEVEL") ?? "info"

    @Option(name: .customLong("log-format"), help: "json (one object per line: time, level, label, message, trace_id, command_id, merchant_id, ...) or text, for a terminal (env PAYFLEET_LOG_FORMAT).")
    public var logFormat: String = environment("PAYFLEET_LOG_FORMAT") ?? "json"

    public init() {}

    /// The topology this process declares at start.
    public func topology() throws -> AMQPTopology { try TopologyFile.load(explicitPath: topologyPath.isEmpty ? nil : topologyPath) }
}

/// Settings of a worker executable.
public struct WorkerOptions: ParsableArguments, Sendable {
    @OptionGroup public var connections: ConnectionOptions

    @Option(help: "Commands handled at once (env PAYFLEET_CONCURRENCY).")
    public var concurrency: Int = Int(environment("PAYFLEET_CONCURRENCY") ?? "") ?? 32

    @Option(name: .customLong("redis-connections"), help: "Redis connections of this process, each with its own thread; calls that queue on one go out together in one round trip (env PAYFLEET_REDIS_CONNECTIONS; 0 = the default, 2: with 32 commands in flight, 2 drained as fast as 4 or 16, with fewer threads).")
    public var redisConnections: Int = Int(environment("PAYFLEET_REDIS_CONNECTIONS") ?? "") ?? 0

    @Option(name: .customLong("max-rate"), help: "Commands started per second at most, for a background worker sharing the servers with live traffic (env PAYFLEET_MAX_RATE; 0 = no limit).")
    public var maxRate: Double = Double(environment("PAYFLEET_MAX_RATE") ?? "") ?? 0

    @Option(help: "Unacknowledged deliveries the broker may send ahead (env PAYFLEET_PREFETCH; at least the concurrency).")
    public var prefetch: Int = Int(environment("PAYFLEET_PREFETCH") ?? "") ?? 64

    @Option(name: .customLong("health-port"), help: "Port of /healthz, /readyz and /metrics on 127.0.0.1 (env PAYFLEET_HEALTH_PORT; 0 = any free port).")
    public var healthPort: Int = Int(environment("PAYFLEET_HEALTH_PORT") ?? "") ?? 9100

    @Option(name: .customLong("health-host"), help: "Address the health server binds (env PAYFLEET_HEALTH_HOST).")
    public var healthHost: String = environment("PAYFLEET_HEALTH_HOST") ?? "127.0.0.1"

    @Option(name: .customLong("max-retries"), help: "Retries through the delay queues before a command is parked (env PAYFLEET_MAX_RETRIES).")
    public var maxRetries: Int = Int(environment("PAYFLEET_MAX_RETRIES") ?? "") ?? 5

    @Option(name: .customLong("max-message-bytes"), help: "Commands over this many bytes are rejected unread (env PAYFLEET_MAX_MESSAGE_BYTES; the broker's own max_message_size is 1 MiB).")
    public var maxMessageBytes: Int = Int(environment("PAYFLEET_MAX_MESSAGE_BYTES") ?? "") ?? CommandWorker.defaultMaxMessageBytes

    @Option(name: .customLong("fleet-broker-user"), parsing: .singleValue, help: "A broker user of the fleet's own processes, trusted as internal and believed when it re-publishes for another sender; repeatable (env PAYFLEET_FLEET_BROKER_USERS, comma-separated; this process's own user always is).")
    public var fleetBrokerUsers: [String] = (environment("PAYFLEET_FLEET_BROKER_USERS") ?? "").split(separator: ",").map(String.init)

    @Option(name: .customLong("group-commit"), help: "Commands that share one PostgreSQL transaction at most, each in its own savepoint, when they are ready together; 1 = a transaction per command (env PAYFLEET_GROUP_COMMIT; at most \(GroupCommitSettings.maxMembersLimit)).")
    public var groupCommit: Int = Int(environment("PAYFLEET_GROUP_COMMIT") ?? "") ?? 1

    @Option(name: .customLong("group-commit-wait-ms"), help: "Milliseconds a group that is not full waits for company; 0 = never (env PAYFLEET_GROUP_COMMIT_WAIT_MS).")
    public var groupCommitWaitMilliseconds: Int = Int(environment("PAYFLEET_GROUP_COMMIT_WAIT_MS") ?? "") ?? 0

    @Option(name: .customLong("group-commit-budget-ms"), help: "Milliseconds a group runs members before it commits and leaves the rest to the next group (env PAYFLEET_GROUP_COMMIT_BUDGET_MS).")
    public var groupCommitBudgetMilliseconds: Int = Int(environment("PAYFLEET_GROUP_COMMIT_BUDGET_MS") ?? "") ?? 25

    @Option(name: .customLong("group-commit-runners"), help: "Group transactions running at once, at least (at most the concurrency); more start while a full group waits, up to the concurrency (env PAYFLEET_GROUP_COMMIT_RUNNERS).")
    public var groupCommitRunners: Int = Int(environment("PAYFLEET_GROUP_COMMIT_RUNNERS") ?? "") ?? 8

    @Option(name: .customLong("command-threads"), help: "1: each command in flight runs on a thread of its own and makes its Redis calls there, without a thread switch per call (its PostgreSQL calls wait on the event loop either way); 0: on Swift's shared threads, every Redis call a hop to the connection's thread (env PAYFLEET_COMMAND_THREADS; off by default: on a quiet 2-core machine it drained at the same rate and CPU per command as 0).")
    public var commandThreads: Int = Int(environment("PAYFLEET_COMMAND_THREADS") ?? "") ?? 0

    @Option(name: .customLong("shutdown-timeout"), help: "Seconds to finish in-flight work and flush the outbox on SIGTERM/SIGINT (env PAYFLEET_SHUTDOWN_TIMEOUT).")
    public var shutdownTimeout: Int = Int(environment("PAYFLEET_SHUTDOWN_TIMEOUT") ?? "") ?? 25

    public init() {}

    /// The group commit these options ask for.
    public var groupCommitSettings: GroupCommitSettings {
        GroupCommitSettings(maxMembers: groupCommit, wait: .milliseconds(groupCommitWaitMilliseconds),
                            budget: .milliseconds(groupCommitBudgetMilliseconds), runners: min(groupCommitRunners, concurrency),
                            maxRunners: concurrency)
    }

    public mutating func validate() throws {
        guard concurrency >= 1, concurrency <= 1024 else { throw ValidationError("--concurrency must be 1...1024") }
        guard commandThreads == 0 || commandThreads == 1 else { throw ValidationError("--command-threads must be 0 or 1") }
        guard (0...256).contains(redisConnections) else { throw ValidationError("--redis-connections must be 0...256") }
        guard maxRate >= 0 else { throw ValidationError("--max-rate must be >= 0") }
        guard prefetch >= 1, prefetch <= 65_535 else { throw ValidationError("--prefetch must be 1...65535") }
        guard maxRetries >= 0 else { throw ValidationError("--max-retries must be >= 0") }
        guard maxMessageBytes >= 1024 else { throw ValidationError("--max-message-bytes must be >= 1024") }
        guard (1...GroupCommitSettings.maxMembersLimit).contains(groupCommit) else {
            throw ValidationError("--group-commit must be 1...\(GroupCommitSettings.maxMembersLimit)")
        }
        guard (0...1000).contains(groupCommitWaitMilliseconds) else { throw ValidationError("--group-commit-wait-ms must be 0...1000") }
        guard (1...60_000).contains(groupCommitBudgetMilliseconds) else { throw ValidationError("--group-commit-budget-ms must be 1...60000") }
        guard groupCommitRunners >= 1 else { throw ValidationError("--group-commit-runners must be >= 1") }
        guard shutdownTimeout >= 1 else { throw ValidationError("--shutdown-timeout must be >= 1") }
    }
}

/// Logging for every executable: one line per event on standard error, at the chosen level, as
/// JSON (default) or text (`FleetLogHandler`).
public enum FleetLogging {
    public static func bootstrap(level: String, label: String, format: String = environment("PAYFLEET_LOG_FORMAT") ?? "json") -> Logger {
        let parsed = Logger.Level(rawValue: level.lowercased()) ?? .info
        let format = LogFormat(rawValue: format.lowercased()) ?? .json
        LoggingSystem.bootstrap({ name, provider in FleetLogHandler(label: name, level: parsed, format: format, metadataProvider: provider) },
                                metadataProvider: LogContext.provider)
        return Logger(label: label)
    }
}

/// Finds and loads `topology/definitions.json`, the one source of the AMQP topology.
public enum TopologyFile {
    public static func load(explicitPath: String?) throws -> AMQPTopology {
        let path = try locate(explicitPath: explicitPath)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FleetError.configuration("cannot read topology file \(path)")
        }
        return try AMQPTopology(definitionsJSON: Array(data))
    }

    /// The explicit path, else `topology/definitions.json` in the working directory or in a parent
    /// of the executable's directory (so `.build/release/payfleet-x` finds the repository's copy).
    public static func locate(explicitPath: String?) throws -> String {
        if let explicitPath { return explicitPath }
        let relative = "topology/definitions.json"
        var candidates = [FileManager.default.currentDirectoryPath + "/" + relative]
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directory = URL(fileURLWithPath: executable).deletingLastPathComponent()
        }
        for _ in 0..<6 {
            candidates.append(directory.appendingPathComponent(relative).path)
            directory.deleteLastPathComponent()
        }
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw FleetError.configuration("topology/definitions.json not found; pass --topology or set PAYFLEET_TOPOLOGY")
        }
        return found
    }
}

/// Errors of the runtime's own making (configuration, not messages).
public enum FleetError: Error, CustomStringConvertible {
    case configuration(String)
    public var description: String {
        switch self {
        case .configuration(let text): text
        }
    }
}
