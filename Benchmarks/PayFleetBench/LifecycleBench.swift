import AMQP
import ArgumentParser
import Contract
import Fleet
import Foundation
import Logging
import Payments
import Postgres
import Synchronization

/// Publishes commands with confirms, at most `inFlight` awaiting their outcome, and times each
/// from publish to its first outcome event (matched by `correlation_id`). Shared by the lifecycle
/// benchmarks.
struct OutcomeTimer {
    let connections: ConnectionOptions
    let merchant: String
    let inFlight: Int
    /// Commands published per second (open loop: on a schedule, whether or not outcomes came), or
    /// nil for as fast as `inFlight` allows.
    let rate: Double?
    let logger: Logger
    /// Where to write one CSV line per command (its id, when it was published, its latency), to
    /// find out when the slow ones ran; nil for none.
    var traceFile: String?

    /// Bootstraps logging (once per process: make one timer and run it as often as needed).
    init(connections: ConnectionOptions, merchant: String, inFlight: Int, rate: Double? = nil) {
        self.connections = connections
        self.merchant = merchant
        self.inFlight = inFlight
        self.rate = rate
        logger = FleetLogging.bootstrap(level: connections.logLevel, label: "bench")
    }

    /// Returns the latencies, the elapsed time, and the event types that arrived per command.
    func run(_ messages: [(id: String, message: AMQPMessage)]) async throws -> (latencies: [Duration], elapsed: Duration, types: [String: String]) {
        let url = try AMQPURL(connections.amqpURL)
        let subscriber = try await subscribeToEvents(url: url, bindingKey: "m.\(merchant).#", logger: logger)
        let publisher = AMQPConnection(configuration: AMQPConfiguration(url: url, connectionName: "bench commands", confirms: true),
                                       logger: logger)
        try await publisher.waitUntilConnected(timeout: .seconds(15))
        let clock = ContinuousClock()
        let sent = Mutex<[String: ContinuousClock.Instant]>([:])
        let wallStart = Date()
        let slots = AsyncSemaphore(inFlight)
        let start = clock.now
        let total = messages.count
        let collector = Task { () -> ([Duration], [String: String]) in
            var latencies: [Duration] = [], types: [String: String] = [:], trace: [String] = []
            for await delivery in subscriber.deliveries {
                guard let id = delivery.properties.correlationId, types[id] == nil, let began = sent.withLock({ $0[id] }) else { continue }
                types[id] = delivery.properties.type ?? ""
                let latency = clock.now - began
                latencies.append(latency)
                if traceFile != nil {
                    trace.append("\(id),\(wallStart.timeIntervalSince1970 + seconds(began - start)),\(seconds(latency) * 1000)")
                }
                slots.signal()
                if latencies.count == total { break }
            }
            if let traceFile {
                do {
                    try (["command_id,published_at_unix,latency_ms"] + trace).joined(separator: "\n")
                        .write(toFile: traceFile, atomically: true, encoding: .utf8)
                } catch {
                    logger.error("could not write the trace", metadata: ["file": "\(traceFile)", "error": "\(error)"])
                }
            }
            return (latencies, types)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, (id, message)) in messages.enumerated() {
                if let rate {
                    let due = start + .nanoseconds(Int64(Double(index) / rate * 1e9))
                    if due > clock.now { try await Task.sleep(until: due, clock: clock) }
                }
                await slots.wait()
                sent.withLock { $0[id] = clock.now }
                group.addTask { guard try await publisher.publish(message) == .acked else { throw Authorize.BenchError.notConfirmed } }
            }
            try await group.waitForAll()
        }
        let (latencies, types) = await collector.value
        let elapsed = clock.now - start
        await publisher.close()
        await subscriber.close()
        return (latencies, elapsed, types)
    }

    static func message<T: Codable & Sendable>(_ type: String, merchant: String, key: String, data: T) throws -> (String, AMQPMessage) {
        let command = CloudEvent(id: MessageIds.newCommandId(), type: type, source: "/bench", time: nil, merchantId: merchant,
                                 idempotencyKey: key, data: data)
        return (command.id, AMQPMessage(exchange: "payfleet.commands", routingKey: type, body: Array(try CanonicalJSON.encode(command).utf8),
                                        properties: AMQPProperties(contentType: "application/cloudevents+json", persistent: true,
                                                                   messageId: command.id, type: type), mandatory: true))
    }
}

/// Captures over AMQP: `holds` pre-authorizations are made first (through the authorize worker),
/// then each is captured in full; each capture is timed from publish to its outcome event.
struct Captures: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "capture",
                                                    abstract: "Captures per second and latency, publish to outcome event.")
    @OptionGroup var connections: ConnectionOptions
    @Option var holds = 3_000
    @Option var merchant: String
    @Option var inFlight = 256

    func run() async throws {
        let timer = OutcomeTimer(connections: connections, merchant: merchant, inFlight: inFlight)
        let tag = UUID().uuidString.prefix(8)
        let creates = try (0..<holds).map { index in
            try OutcomeTimer.message("preauth.create", merchant: merchant, key: "bench-hold-\(tag)-\(index)", data: PreAuthRequest(
                payment: PaymentRequest(orderNo: "room-\(tag)-\(index)", amount: Int64(10_000 + (index % 50) * 100), currency: .USD, country: "US",
                                        payMethod: .card)))
        }
        let held = try await timer.run(creates)
        let numbers = (0..<holds).map { Identifiers.preAuthNo(merchantId: merchant, idempotencyKey: "bench-hold-\(tag)-\($0)") }
        let captures = try numbers.map { number in
            try OutcomeTimer.message("preauth.capture", merchant: merchant, key: "\(number)-capture", data: CaptureRequest(preAuthNo: number))
        }
        let captured = try await timer.run(captures)
        let percentiles = Percentiles(captured.latencies)
        struct Result: Encodable {
            let captures: Int, per_second: Double, p50_ms: Double, p99_ms: Double, succeeded: Int, holds_per_second: Double
        }
        try printJSON(Result(captures: captured.latencies.count, per_second: Double(captured.latencies.count) / seconds(captured.elapsed),
                             p50_ms: percentiles.p50, p99_ms: percentiles.p99,
                             succeeded: captured.types.values.filter { $0 == "payment.succeeded" }.count,
                             holds_per_second: Double(held.latencies.count) / seconds(held.elapsed)))
    }
}

/// Makes `payments` pending payments (amounts ending in 52: the sandbox leaves them pending) and
/// waits until all are in.
struct Pending: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make N pending payments for a merchant (for the timeout sweep).")
    @OptionGroup var connections: ConnectionOptions
    @Option var payments = 10_000
    @Option var merchant: String

    func run() async throws {
        let timer = OutcomeTimer(connections: connections, merchant: merchant, inFlight: 256)
        let tag = UUID().uuidString.prefix(8)
        let messages = try (0..<payments).map { index in
            try OutcomeTimer.message("payment.create", merchant: merchant, key: "bench-pending-\(tag)-\(index)", data: PaymentRequest(
                orderNo: "pending-\(tag)-\(index)", amount: Int64(1_052 + (index % 50) * 100), currency: .USD, country: "US", payMethod: .card))
        }
        let result = try await timer.run(messages)
        struct Result: Encodable { let payments: Int; let pending: Int; let per_second: Double }
        try printJSON(Result(payments: result.latencies.count, pending: result.types.values.filter { $0 == "payment.pending" }.count,
                             per_second: Double(result.latencies.count) / seconds(result.elapsed)))
    }
}

/// Publishes one `payment.timeout` sweep for `merchant` on a test clock 31 minutes ahead (sandbox
/// mode), and measures until none of the merchant's payments is pending any more.
struct TimeoutSweep: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sweep", abstract: "Time one timeout sweep over a merchant's pending payments.")
    @OptionGroup var connections: ConnectionOptions
    @Option var merchant: String

    func run() async throws {
        let logger = FleetLogging.bootstrap(level: connections.logLevel, label: "bench")
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: connections.databaseURL), size: 1, logger: logger)
        func pending() async throws -> Int {
            try await pool.query("SELECT count(*) AS n FROM payments WHERE merchant_id = $1 AND status = 'pending'", [merchant]).rows[0].int("n")
        }
        let due = try await pending()
        let publisher = AMQPConnection(configuration: AMQPConfiguration(url: try AMQPURL(connections.amqpURL), connectionName: "bench sweep",
                                                                        confirms: true), logger: logger)
        try await publisher.waitUntilConnected(timeout: .seconds(15))
        let (_, message) = try OutcomeTimer.message("payment.timeout", merchant: merchant, key: "bench-sweep-\(UUID().uuidString)",
                                                    data: ["now": Timestamp.format(Date().addingTimeInterval(31 * 60))])
        let clock = ContinuousClock(), start = clock.now
        guard try await publisher.publish(message) == .acked else { throw Authorize.BenchError.notConfirmed }
        while try await pending() > 0 { try await Task.sleep(for: .milliseconds(50)) }
        let elapsed = clock.now - start
        await publisher.close()
        await pool.close()
        struct Result: Encodable { let payments: Int; let seconds: Double; let per_second: Double }
        try printJSON(Result(payments: due, seconds: seconds(elapsed), per_second: Double(due) / seconds(elapsed)))
    }
}

/// A connection consuming (no ack) an exclusive queue bound to `payfleet.events` with `bindingKey`.
func subscribeToEvents(url: AMQPURL, bindingKey: String, prefetch: UInt16 = 1000, logger: Logger) async throws -> AMQPConnection {
    let subscriber = AMQPConnection(configuration: AMQPConfiguration(url: url, connectionName: "bench events", prefetch: prefetch),
                                    logger: logger)
    try await subscriber.waitUntilConnected(timeout: .seconds(15))
    let queue = try await subscriber.declareQueue(AMQPQueueDeclaration(name: "", durable: false, exclusive: true, autoDelete: true,
                                                                       arguments: [:])).name
    try await subscriber.bind(AMQPBinding(source: "payfleet.events", destination: queue, routingKey: bindingKey, arguments: [:]))
    _ = try await subscriber.consume(ConsumeSpec(queue: queue, noAck: true))
    return subscriber
}
