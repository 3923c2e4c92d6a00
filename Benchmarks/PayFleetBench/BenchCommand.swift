import AMQP
import ArgumentParser
import Contract
import Fleet
import Foundation
import Logging
import Payments
import Postgres
import Store
import Synchronization

/// `payfleet-bench`: the load generator behind `Benchmarks/run.sh`. Each subcommand prints one
/// JSON object on standard output, so the script can put every number in one table.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payfleet-bench",
        abstract: "Load generator for Benchmarks/run.sh (prints JSON).",
        subcommands: [Broker.self, Authorize.self, Merchant.self, Preload.self, Sample.self, RoutingDecisions.self,
                      LimitReservations.self, MerchantLookup.self, Captures.self, Pending.self, TimeoutSweep.self, Drain.self])
}

/// Latency percentiles of a sample, in milliseconds.
struct Percentiles: Encodable {
    let p50: Double
    let p99: Double
    init(_ samples: [Duration]) {
        let sorted = samples.map { Double($0.components.attoseconds) / 1e15 + Double($0.components.seconds) * 1e3 }.sorted()
        func at(_ q: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
        p50 = at(0.5)
        p99 = at(0.99)
    }
}

/// A `payment.create` command for `merchant` as an upstream system publishes it; the amounts
/// (1,000-1,049) all succeed in the sandbox, each for its own order. Returns the command id and the message.
func paymentCreate(index: Int, merchant: String) throws -> (String, AMQPMessage) {
    let id = MessageIds.newCommandId()
    let command = CloudEvent(id: id, type: "payment.create", source: "/bench", time: nil,
                             merchantId: merchant,
                             data: PaymentRequest(orderNo: "bench-\(id.prefix(13))-\(index)", amount: Int64(1_000 + (index % 50)),
                                                  currency: .USD, country: "US", payMethod: .card))
    let message = AMQPMessage(exchange: "payfleet.commands", routingKey: "payment.create",
                              body: Array(try CanonicalJSON.encode(command).utf8),
                              properties: AMQPProperties(contentType: "application/cloudevents+json", persistent: true,
                                                         messageId: command.id, type: command.type), mandatory: true)
    return (command.id, message)
}

func printJSON<T: Encodable>(_ value: T) throws {
    print(try CanonicalJSON.encode(value))
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// Raw broker baseline: persistent messages to a quorum queue with pipelined confirms, then consumed.
struct Broker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Raw publish-with-confirms and consume rates on a quorum queue.")
    @OptionGroup var connections: ConnectionOptions
    @Option var messages = 30_000
    @Option var size = 300
    @Option var window = 500
    @Option var prefetch: UInt16 = 100

    func run() async throws {
        let logger = FleetLogging.bootstrap(level: connections.logLevel, label: "bench")
        let url = try AMQPURL(connections.amqpURL)
        let queue = "bench.raw.\(UUID().uuidString.prefix(8))"
        let publisher = AMQPConnection(configuration: AMQPConfiguration(url: url, connectionName: "bench publisher", confirms: true,
                                                                        confirmWindow: window), logger: logger)
        try await publisher.waitUntilConnected(timeout: .seconds(15))
        _ = try await publisher.declareQueue(AMQPQueueDeclaration(name: queue, durable: true, exclusive: false, autoDelete: false,
                                                                  arguments: ["x-queue-type": .string("quorum")]))
        let body = [UInt8](repeating: 0x61, count: size)
        let message = AMQPMessage(exchange: "", routingKey: queue, body: body, properties: AMQPProperties(persistent: true))
        let clock = ContinuousClock()
        let publishStart = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<messages { group.addTask { _ = try await publisher.publish(message) } }
            try await group.waitForAll()
        }
        let publishTime = clock.now - publishStart

        let consumer = AMQPConnection(configuration: AMQPConfiguration(url: url, connectionName: "bench consumer", prefetch: prefetch,
                                                                       consumes: [ConsumeSpec(queue: queue)]), logger: logger)
        let consumeStart = clock.now
        var count = 0
        for await delivery in consumer.deliveries {
            consumer.ack(delivery)
            count += 1
            if count == messages { break }
        }
        let consumeTime = clock.now - consumeStart
        try await publisher.deleteQueue(queue)
        await consumer.close()
        await publisher.close()
        struct Result: Encodable { let messages: Int; let publish_per_second: Double; let consume_per_second: Double }
        try printJSON(Result(messages: messages, publish_per_second: Double(messages) / seconds(publishTime),
                             consume_per_second: Double(messages) / seconds(consumeTime)))
    }
}

/// Creates a merchant with limits high enough for a benchmark; prints its id and API key.
struct Merchant: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a benchmark merchant (premium, USD, no practical limits).")
    @OptionGroup var connections: ConnectionOptions

    func run() async throws {
        let logger = FleetLogging.bootstrap(level: connections.logLevel, label: "bench")
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: connections.databaseURL), size: 1, logger: logger)
        let (merchant, apiKey) = try await pool.withConnection { connection in
            let created = try await MerchantStore().create(NewMerchant(name: "bench", tier: .premium, baseCurrency: .USD, country: "US",
                                                                       autoSettlement: false), on: connection)
            _ = try await connection.query("UPDATE merchants SET limit_overrides = $2::jsonb WHERE merchant_id = $1",
                                           [created.merchant.merchantId,
                                            #"{"single_limit":1000000000000,"daily_limit":1000000000000000,"monthly_limit":1000000000000000}"#])
            return created
        }
        await pool.close()
        struct Result: Encodable { let merchant_id: String; let api_key: String }
        try printJSON(Result(merchant_id: merchant.merchantId, api_key: apiKey))
    }
}

/// End to end over AMQP: publish `payment.create` with confirms, as fast as confirms allow, and
/// time each command until its outcome event arrives on `payfleet.events`.
struct Authorize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Commands per second and latency, publish to outcome event.")
    @OptionGroup var connections: ConnectionOptions
    @Option var commands = 5_000
    @Option(help: "The merchant to pay (from `payfleet-bench merchant`).") var merchant: String
    @Option(help: "Commands in flight at most (publish-to-outcome).") var inFlight = 256
    @Option(help: "Commands published per second, on a schedule (open loop); 0 = as fast as --in-flight allows.") var rate = 0.0
    @Option(help: "A CSV file to write each command's id, publish time (Unix seconds) and latency (ms) to.") var trace: String?

    func run() async throws {
        let messages = try (0..<commands).map { index -> (id: String, message: AMQPMessage) in
            let (id, message) = try paymentCreate(index: index, merchant: merchant)
            return (id, message)
        }
        var timer = OutcomeTimer(connections: connections, merchant: merchant, inFlight: inFlight, rate: rate > 0 ? rate : nil)
        timer.traceFile = trace
        let result = try await timer.run(messages)
        let percentiles = Percentiles(result.latencies)
        struct Result: Encodable { let commands: Int; let per_second: Double; let p50_ms: Double; let p99_ms: Double }
        try printJSON(Result(commands: result.latencies.count, per_second: Double(result.latencies.count) / seconds(result.elapsed),
                             p50_ms: percentiles.p50, p99_ms: percentiles.p99))
    }

    enum BenchError: Error { case notConfirmed }
}

/// A counting semaphore for tasks (bounded in-flight work).
final class AsyncSemaphore: Sendable {
    private struct State {
        var permits: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state: Mutex<State>

    init(_ permits: Int) { state = Mutex(State(permits: permits)) }

    func wait() async {
        await withCheckedContinuation { continuation in
            let proceed = state.withLock { state -> Bool in
                if state.permits > 0 { state.permits -= 1; return true }
                state.waiters.append(continuation)
                return false
            }
            if proceed { continuation.resume() }
        }
    }

    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty { state.permits += 1; return nil }
            return state.waiters.removeFirst()
        }
        waiter?.resume()
    }
}

/// Publishes `payment.create` commands with confirms and returns: queue them up before a worker
/// starts, to time the worker alone draining a backlog.
struct Preload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Queue N payment.create commands (confirmed) and exit.")
    @OptionGroup var connections: ConnectionOptions
    @Option var commands = 10_000
    @Option var merchant: String

    func run() async throws {
        let logger = FleetLogging.bootstrap(level: connections.logLevel, label: "bench")
        let publisher = AMQPConnection(configuration: AMQPConfiguration(url: try AMQPURL(connections.amqpURL),
                                                                        connectionName: "bench preload", confirms: true), logger: logger)
        try await publisher.waitUntilConnected(timeout: .seconds(15))
        let clock = ContinuousClock(), start = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<commands {
                let (_, message) = try paymentCreate(index: index, merchant: merchant)
                group.addTask { guard try await publisher.publish(message) == .acked else { throw Authorize.BenchError.notConfirmed } }
            }
            try await group.waitForAll()
        }
        let elapsed = clock.now - start
        await publisher.close()
        struct Result: Encodable { let commands: Int; let publish_per_second: Double }
        try printJSON(Result(commands: commands, publish_per_second: Double(commands) / seconds(elapsed)))
    }
}

/// A real routing record and outcome event, made by the production code, so the pgbench baseline
/// writes rows of the same size as the authorize worker.
struct Sample: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a real routing record, payment.succeeded event and order.updated event (JSON).")

    func run() async throws {
        let request = PaymentRequest(orderNo: "order-1001", amount: 1_000, currency: .USD, country: "US", payMethod: .card)
        let decision = ChannelRouter(config: .defaults).decide(RoutingInput(amount: 1_000, currency: .USD, country: "US", payMethod: .card),
                                                              seed: 42)
        let payment = Payment(paymentNo: Identifiers.paymentNo(merchantId: "mch_bench", idempotencyKey: "k"), merchantId: "mch_bench",
                              request: request, status: .succeeded, channel: decision.channel, routing: decision,
                              channelFee: decision.estimatedFee ?? 0, version: 1, at: Date())
        let event = CloudEvent(id: MessageIds.eventId(merchantId: "m", commandId: "c", type: "payment.succeeded"), type: "payment.succeeded",
                               source: "/payfleet/authorize", time: Timestamp.format(Date()), merchantId: "mch_bench", data: payment)
        // The order the payment paid, and its `order.updated` event (the transaction's second outbox row).
        let time = Timestamp.format(Date())
        var order = Order(orderNo: request.orderNo, merchantId: "mch_bench", amount: request.amount, currency: request.currency,
                          version: 0, createdAt: time, updatedAt: time)
        let before = order
        order.attempt(payment.paymentNo, amount: request.amount, currency: request.currency)
        order.paid(request.amount)
        let orderEvent = CloudEvent(id: MessageIds.eventId(merchantId: "m", commandId: "c", type: Order.eventType), type: Order.eventType,
                                    source: "/payfleet/authorize", time: time, merchantId: "mch_bench",
                                    data: order.changed(from: before, at: Date()) ?? order)
        struct Result: Encodable { let routing: String; let event: String; let order_event: String }
        try printJSON(Result(routing: try CanonicalJSON.encode(decision), event: try CanonicalJSON.encode(event),
                             order_event: try CanonicalJSON.encode(orderEvent)))
    }
}
