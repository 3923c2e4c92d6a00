import AMQP
import ArgumentParser
import Contract
import Fleet
import Foundation
import Synchronization

/// The drain measure of `Benchmarks/drain.py`: queue a backlog of `payment.create` commands while
/// no authorize worker runs, say so on standard output (`{"queued": N, ...}`), then time the
/// workers the driver starts from the first outcome event to the last.
///
/// Standard output gets two JSON lines: the first when the backlog is queued (confirmed), the
/// second when every command has its outcome event (the first per `correlation_id`).
struct Drain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Queue a backlog of payment.create commands, then time its drain (two JSON lines).")
    @OptionGroup var connections: ConnectionOptions
    @Option var commands = 20_000
    @Option(help: "The merchant to pay (from `payfleet-bench merchant`).") var merchant: String
    @Option(help: "Give up after this many seconds without a new outcome.") var idleTimeout = 120.0

    func run() async throws {
        let logger = FleetLogging.bootstrap(level: connections.logLevel, label: "bench")
        let url = try AMQPURL(connections.amqpURL)
        let subscriber = try await subscribeToEvents(url: url, bindingKey: "m.\(merchant).payment.*", prefetch: 2000, logger: logger)

        let messages = try (0..<commands).map { try paymentCreate(index: $0, merchant: merchant) }
        let ids = Set(messages.map(\.0))
        let publisher = AMQPConnection(configuration: AMQPConfiguration(url: url, connectionName: "bench drain commands", confirms: true),
                                       logger: logger)
        try await publisher.waitUntilConnected(timeout: .seconds(15))
        let clock = ContinuousClock(), publishStart = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (_, message) in messages {
                group.addTask { guard try await publisher.publish(message) == .acked else { throw Authorize.BenchError.notConfirmed } }
            }
            try await group.waitForAll()
        }
        let published = clock.now
        await publisher.close()
        struct Queued: Encodable { let queued: Int; let publish_per_second: Double }
        try printJSON(Queued(queued: commands, publish_per_second: Double(commands) / seconds(published - publishStart)))
        fflush(nil)  // all output streams: the driver reads the line before it starts the workers

        // Outcomes, counted as they come; a watchdog ends the wait when they stop coming.
        let last = Mutex(clock.now)
        let watchdog = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                if clock.now - last.withLock({ $0 }) > .seconds(idleTimeout) { await subscriber.close(); return }
            }
        }
        var seen: Set<String> = [], types: [String: Int] = [:]
        var first: ContinuousClock.Instant?, final = published
        for await delivery in subscriber.deliveries {
            guard let id = delivery.properties.correlationId, ids.contains(id), seen.insert(id).inserted else { continue }
            let now = clock.now
            last.withLock { $0 = now }
            if first == nil { first = now }
            final = now
            types[delivery.properties.type ?? "?", default: 0] += 1
            if seen.count == commands { break }
        }
        watchdog.cancel()
        await subscriber.close()
        let span = first.map { seconds(final - $0) } ?? 0
        struct Drained: Encodable {
            let outcomes: Int; let first_outcome_after_queued_s: Double; let drain_seconds: Double; let per_second: Double
            let types: [String: Int]
        }
        try printJSON(Drained(outcomes: seen.count, first_outcome_after_queued_s: first.map { seconds($0 - published) } ?? 0,
                              drain_seconds: span, per_second: span > 0 ? Double(seen.count - 1) / span : 0, types: types))
        if seen.count < commands { throw ExitCode(1) }
    }
}
