import AMQP
import ArgumentParser
import Contract
import Fleet
import Foundation
import Logging
import Postgres
import Store

/// `payfleet`: the operator's CLI.
@main
struct PayFleetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payfleet",
        abstract: "Operate a PayFleet deployment: schema, topology, parked messages, tiers, routing, the risk blacklist, settlement and archive.",
        subcommands: [Migrate.self, Topology.self, Parked.self, Schedule.self, MerchantCommand.self, RoutingCommand.self, RiskCommand.self,
                      FXCommand.self, SettleCommand.self, ArchiveCommand.self, CalendarCommand.self, BrokerUserCommand.self])
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply the database migrations that are not applied yet (safe to run concurrently).")
    @OptionGroup var connections: ConnectionOptions

    func run() async throws {
        let applied = try await withDatabase(connections) { pool in
            try await Migrations.apply(to: pool, logger: Logger(label: "payfleet"))
        }
        print(applied.isEmpty ? "schema is up to date (\(Migrations.all.count) migrations)" : "applied migrations \(applied.map(String.init).joined(separator: ", "))")
    }
}

struct Topology: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The RabbitMQ topology of topology/definitions.json.",
                                                    subcommands: [Apply.self])

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Declare the exchanges, queues and bindings (idempotent).")
        @OptionGroup var connections: ConnectionOptions

        func run() async throws {
            let logger = FleetLogging.bootstrap(level: connections.logLevel, label: "payfleet", format: connections.logFormat)
            let topology = try connections.topology()
            let broker = try await Broker.connect(connections, logger: logger)
            try await broker.declare(topology)
            await broker.close()
            print("declared \(topology.exchanges.count) exchanges, \(topology.queues.count) queues, \(topology.bindings.count) bindings")
        }
    }
}

enum Broker {
    static func connect(_ connections: ConnectionOptions, logger: Logger, confirms: Bool = false) async throws -> AMQPConnection {
        let connection = AMQPConnection(configuration: AMQPConfiguration(url: try AMQPURL(connections.amqpURL),
                                                                         connectionName: "payfleet cli", confirms: confirms),
                                        logger: logger)
        do { try await connection.waitUntilConnected(timeout: .seconds(15)) } catch {
            await connection.close()
            throw ValidationError("cannot reach RabbitMQ at \(connections.amqpURL)")
        }
        return connection
    }
}

/// Parked messages: list, inspect and replay what the workers set aside.
struct Parked: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List, inspect and replay parked messages (queue payfleet.parked).",
                                                    subcommands: [List.self, Show.self, Replay.self])

    /// Takes up to `limit` parked messages without acking them, hands them to `body`, and returns
    /// the rest to the queue when the connection closes.
    static func scan(_ connections: ConnectionOptions, limit: Int,
                     _ body: (AMQPConnection, [ParkedMessage]) async throws -> Void) async throws {
        let logger = FleetLogging.bootstrap(level: connections.logLevel, label: "payfleet", format: connections.logFormat)
        let broker = try await Broker.connect(connections, logger: logger, confirms: true)
        var entries: [ParkedMessage] = []
        while entries.count < limit, let delivery = try await broker.get(queue: Exchanges.parkedQueue, noAck: false) {
            entries.append(ParkedMessage(delivery))
        }
        do { try await body(broker, entries) } catch {
            await broker.close()
            throw error
        }
        await broker.close()
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List parked messages with their reasons.")
        @OptionGroup var connections: ConnectionOptions
        @Option(help: "At most this many.") var limit = 100

        func run() async throws {
            try await Parked.scan(connections, limit: limit) { _, entries in
                print("message_id\ttype\tqueue\tparked_at\treason")
                for entry in entries { print(entry.listLine) }
                print("\(entries.count) parked message(s)")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one parked message: headers and body.")
        @OptionGroup var connections: ConnectionOptions
        @Argument(help: "The message_id to show.") var messageId: String
        @Option(help: "How many parked messages to search.") var limit = 10_000

        func run() async throws {
            try await Parked.scan(connections, limit: limit) { _, entries in
                guard let entry = entries.first(where: { $0.messageId == messageId }) else {
                    throw ValidationError("no parked message \(messageId)")
                }
                print("message_id: \(entry.messageId)\ntype: \(entry.type)\nqueue: \(entry.queue)\nparked_at: \(entry.parkedAt)\nreason: \(entry.reason)")
                for (key, value) in entry.delivery.properties.headers.sorted(by: { $0.key < $1.key }) { print("header \(key): \(value)") }
                print("body:\n\(String(decoding: entry.delivery.body, as: UTF8.self))")
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send parked messages back to the queue they came from (retry counters reset).",
            discussion: "Give message ids, or --all. A replayed command is still exactly-once: the workers' inbox recognises what was done.")
        @OptionGroup var connections: ConnectionOptions
        @Argument(help: "message_ids to replay.") var messageIds: [String] = []
        @Flag(help: "Replay every parked message.") var all = false
        @Option(help: "How many parked messages to look at.") var limit = 10_000

        func validate() throws {
            guard all || !messageIds.isEmpty else { throw ValidationError("name message ids or pass --all") }
        }

        func run() async throws {
            try await Parked.scan(connections, limit: limit) { broker, entries in
                var replayed = 0
                for entry in entries where all || messageIds.contains(entry.messageId) {
                    let outcome = try await broker.publish(AMQPMessage(exchange: "", routingKey: entry.queue, body: entry.delivery.body,
                                                                       properties: entry.replayProperties, mandatory: true))
                    guard outcome == .acked else {
                        print("not replayed \(entry.messageId): \(outcome)")
                        continue
                    }
                    broker.ack(entry.delivery)
                    replayed += 1
                    print("replayed \(entry.messageId) to \(entry.queue)")
                }
                print("\(replayed) message(s) replayed")
            }
        }
    }
}

/// The clock's record: each task, its last slots and their states.
struct Schedule: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "What the clock (payfleet-clock) ran.", subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Each task with its last slots: state, attempts, when it finished, and why it failed or was skipped.")
        @OptionGroup var connections: ConnectionOptions
        @Option(help: "Slots shown per task.") var last = 5

        func run() async throws {
            let rows = try await withDatabase(connections) { try await ScheduledTaskStore(pool: $0).recent(limit: last) }
            guard !rows.isEmpty else {
                print("no slots recorded yet: is payfleet-clock running?")
                return
            }
            print("task\tslot\tstatus\tattempts\tfinished_at\tnote")
            for row in rows {
                print([row.task, Timestamp.format(row.slot), row.status.rawValue, String(row.attempts),
                       row.finishedAt.map { Timestamp.format($0) } ?? "-", row.error ?? ""]
                    .map { $0.replacingOccurrences(of: "\t", with: " ").replacingOccurrences(of: "\n", with: " ") }
                    .joined(separator: "\t"))
            }
        }
    }
}
