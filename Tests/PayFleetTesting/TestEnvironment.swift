import AMQP
import Fleet
import Foundation
import Logging
import Postgres
import Redis

/// Where the test servers are: `deploy/local/test.sh` starts them and exports these variables;
/// the defaults are that script's ports.
public enum TestEnvironment {
    public static var amqpURL: String { env("PAYFLEET_AMQP_URL") ?? "amqp://payfleet:payfleet@127.0.0.1:5673/%2F" }
    public static var databaseURL: String { env("PAYFLEET_DATABASE_URL") ?? "postgres://payfleet:payfleet@127.0.0.1:5433/payfleet" }
    public static var redisURL: String { env("PAYFLEET_REDIS_URL") ?? "redis://127.0.0.1:6380/0" }
    /// The directory of the test PostgreSQL's Unix socket (it listens on TCP too).
    public static var postgresSocketDirectory: String {
        env("PAYFLEET_PG_SOCKET_DIR") ?? repositoryRoot.appendingPathComponent(".state/test/pgsock").path
    }

    /// The repository's root (tests run from it; this file's path is the fallback).
    public static var repositoryRoot: URL {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }

    /// Where the built executables are (`swift build --show-bin-path`).
    public static var binDirectory: URL {
        env("PAYFLEET_BIN_DIR").map { URL(fileURLWithPath: $0) } ?? repositoryRoot.appendingPathComponent(".build/debug")
    }

    public static var topologyPath: String { repositoryRoot.appendingPathComponent("topology/definitions.json").path }

    public static func env(_ name: String) -> String? {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else { return nil }
        return value
    }

    public static let logger: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = env("PAYFLEET_TEST_LOG_LEVEL").flatMap(Logger.Level.init(rawValue:)) ?? .warning
        return logger
    }()

    public static func postgres(size: Int = 4) throws -> PostgresPool {
        PostgresPool(configuration: try PostgresConfiguration(url: databaseURL), size: size, logger: logger)
    }

    public static func redis(poolSize: Int = 4) throws -> RedisClient {
        try RedisClient(url: redisURL, poolSize: poolSize, logger: logger)
    }

    /// A connected AMQP connection (confirms on by default), as the test stack's user unless `url`
    /// names another; `stampsUserId: false` publishes without `user_id`.
    public static func amqp(_ name: String, confirms: Bool = true, prefetch: UInt16 = 0,
                            consumes: [ConsumeSpec] = [], url: String? = nil, stampsUserId: Bool = true) async throws -> AMQPConnection {
        let connection = AMQPConnection(configuration: AMQPConfiguration(url: try AMQPURL(url ?? amqpURL), connectionName: name,
                                                                         confirms: confirms, prefetch: prefetch, consumes: consumes,
                                                                         stampsUserId: stampsUserId),
                                        logger: logger)
        try await connection.waitUntilConnected(timeout: .seconds(15))
        return connection
    }

    /// The policy a worker of the test stack runs with: the stack's user is the fleet's own.
    public static func publisherPolicy(_ pool: PostgresPool) throws -> PublisherPolicy {
        PublisherPolicy(fleetUsers: [try AMQPURL(amqpURL).user], directory: BrokerUserDirectory(pool: pool),
                        reservedQueues: Set(try TopologyFile.load(explicitPath: topologyPath).queues.map(\.name)))
    }

    /// A fresh unique name for a test's own queues, merchants and keys.
    public static func unique(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
public func eventually(timeout: Duration = .seconds(30), every interval: Duration = .milliseconds(50),
                       _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}
