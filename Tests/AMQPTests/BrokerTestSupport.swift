import AMQP
import Foundation
import PayFleetTesting
import Logging

/// Where the integration tests find RabbitMQ, and small helpers that keep every wait bounded.
enum Broker {
    /// `PAYFLEET_AMQP_URL`, exported by the project's test script.
    static var url: AMQPURL {
        let string = ProcessInfo.processInfo.environment["PAYFLEET_AMQP_URL"]
            ?? "amqp://guest:guest@127.0.0.1:5673/%2F"
        return try! AMQPURL(string)
    }

    static var logger: Logger {
        var logger = Logger(label: "AMQPTests")
        logger.logLevel = ProcessInfo.processInfo.environment["PAYFLEET_TEST_LOG_LEVEL"]
            .flatMap(Logger.Level.init(rawValue:)) ?? .warning
        return logger
    }

    /// A name no other test (or earlier run) uses.
    static func unique(_ prefix: String) -> String {
        "amqptest.\(prefix).\(UUID().uuidString.prefix(8).lowercased())"
    }

    static func connection(_ name: String, confirms: Bool = false, confirmWindow: Int = 1000, prefetch: UInt16 = 0,
                           consumes: [ConsumeSpec] = [], topology: AMQPTopology? = nil,
                           heartbeatSeconds: Int = 30) -> AMQPConnection {
        AMQPConnection(configuration: AMQPConfiguration(
            url: url, connectionName: name, confirms: confirms, confirmWindow: confirmWindow, prefetch: prefetch,
            consumes: consumes,
            topology: topology, heartbeatSeconds: heartbeatSeconds,
            reconnectInitialDelay: .milliseconds(50), reconnectMaxDelay: .seconds(1)),
            logger: logger)
    }

    /// A connected connection, or a thrown timeout after 10 s.
    static func connected(_ name: String, confirms: Bool = false, confirmWindow: Int = 1000, prefetch: UInt16 = 0,
                          consumes: [ConsumeSpec] = [], topology: AMQPTopology? = nil,
                          heartbeatSeconds: Int = 30) async throws -> AMQPConnection {
        let connection = connection(name, confirms: confirms, confirmWindow: confirmWindow, prefetch: prefetch,
                                    consumes: consumes,
                                    topology: topology, heartbeatSeconds: heartbeatSeconds)
        try await connection.waitUntilConnected(timeout: .seconds(10))
        return connection
    }

    /// Runs `rabbitmqctl -n NODE ARGS` on the test stack's node and returns its standard output.
    static func rabbitmqctl(_ arguments: [String]) throws -> String {
        try RabbitMQControl.run(arguments)
    }

    /// Makes the broker drop every connection whose client-provided name is `name`
    /// (only this test's connections: other suites may share the broker).
    /// Returns how many it closed.
    @discardableResult
    static func closeConnections(named name: String) throws -> Int {
        // Table output: one line per connection, "<pid>\t<client properties>". (The JSON
        // formatter prints pids in a form close_connection does not accept.)
        let table = try rabbitmqctl(["list_connections", "pid", "client_properties", "-q", "--no-table-headers"])
        var closed = 0
        for line in table.split(separator: "\n") where line.contains("\"\(name)\"") {
            guard let pid = line.split(separator: "\t").first, pid.hasPrefix("<") else { continue }
            _ = try rabbitmqctl(["close_connection", String(pid), "test"])
            closed += 1
        }
        return closed
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Collects a connection's deliveries so tests can wait for a number of them, bounded.
actor DeliveryInbox {
    private var buffer: [AMQPDelivery] = []

    init(_ stream: AsyncStream<AMQPDelivery>) {
        Task { [weak self] in
            for await delivery in stream {
                guard let self else { return }
                await self.append(delivery)
            }
        }
    }

    private func append(_ delivery: AMQPDelivery) { buffer.append(delivery) }

    /// The next `count` deliveries; throws if they do not all arrive within `timeout`.
    func take(_ count: Int, timeout: Duration = .seconds(10)) async throws -> [AMQPDelivery] {
        let deadline = ContinuousClock.now + timeout
        while buffer.count < count {
            guard ContinuousClock.now < deadline else {
                throw TestFailure("expected \(count) deliveries, got \(buffer.count) within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        defer { buffer.removeFirst(count) }
        return Array(buffer.prefix(count))
    }

    /// Deliveries that arrived and were not taken.
    var pending: Int { buffer.count }
}

/// Runs `operation`, failing with a timeout after `limit` even if it never returns.
func bounded<T: Sendable>(_ what: String, _ limit: Duration = .seconds(10),
                          _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let once = ResumeOnce<T>()
    return try await withCheckedThrowingContinuation { continuation in
        once.set(continuation)
        Task {
            do { once.resume(.success(try await operation())) } catch { once.resume(.failure(error)) }
        }
        Task {
            try? await Task.sleep(for: limit)
            once.resume(.failure(TestFailure("\(what) did not finish within \(limit)")))
        }
    }
}

/// Repeats `operation` until it succeeds, for up to `limit` (e.g. while reconnecting).
func eventually<T: Sendable>(_ what: String, _ limit: Duration = .seconds(10),
                             _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let deadline = ContinuousClock.now + limit
    while true {
        do {
            return try await bounded(what, limit, operation)
        } catch {
            guard ContinuousClock.now < deadline else { throw error }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

private final class ResumeOnce<T: Sendable>: @unchecked Sendable {
    // Guarded by `lock`; Foundation's lock keeps the test target's imports to the allowed set.
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        lock.withLock { self.continuation = continuation }
    }

    func resume(_ result: Result<T, any Error>) {
        let continuation = lock.withLock { () -> CheckedContinuation<T, any Error>? in
            defer { self.continuation = nil }
            return self.continuation
        }
        continuation?.resume(with: result)
    }
}

extension AMQPConnection {
    /// Publishes to a queue through the default exchange.
    func publish(to queue: String, _ body: [UInt8], properties: AMQPProperties = .init()) async throws
        -> PublishOutcome {
        try await publish(AMQPMessage(exchange: "", routingKey: queue, body: body, properties: properties))
    }
}
