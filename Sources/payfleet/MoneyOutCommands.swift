import AMQP
import ArgumentParser
import Contract
import Fleet
import Foundation
import Payments
import Store

/// Publishes one command with a publisher confirm, and prints its id.
func publishCommand<T: Codable & Sendable>(_ type: String, merchantId: String?, key: String, data: T,
                                           _ connections: ConnectionOptions) async throws {
    let logger = FleetLogging.bootstrap(level: connections.logLevel, label: "payfleet", format: connections.logFormat)
    let broker = try await Broker.connect(connections, logger: logger, confirms: true)
    let command = CloudEvent(id: MessageIds.newCommandId(), type: type, source: "/payfleet/cli", time: Timestamp.format(Date()),
                             merchantId: merchantId, idempotencyKey: key, data: data)
    let outcome: PublishOutcome
    do {
        outcome = try await broker.publish(AMQPMessage(exchange: Exchanges.commands, routingKey: type,
                                                       body: Array(try CanonicalJSON.encode(command).utf8),
                                                       properties: AMQPProperties(contentType: CloudEvent<T>.contentType, persistent: true,
                                                                                  messageId: command.id, type: type, timestamp: Date()),
                                                       mandatory: true))
    } catch {
        await broker.close()
        throw error
    }
    await broker.close()
    guard outcome == .acked else { throw ValidationError("the broker did not accept \(type): \(outcome)") }
    print("published \(type) \(command.id) (idempotency key \(key))")
}

/// `payfleet settle --date D [--merchant M]`: settles a day now, for every merchant with
/// auto-settlement on or for one merchant. A rerun changes nothing.
struct SettleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "settle", abstract: "Settle one UTC day now (publishes settlement.run, or settlement.merchant with --merchant).",
        discussion: "Only a day that has ended is settled. Settlements are unique per merchant, currency and day: a rerun changes nothing. Follow the outcome with GET /api/v1/merchant/settlements or the settlement.created events.")
    @OptionGroup var connections: ConnectionOptions
    @Option(help: "The UTC day, YYYY-MM-DD.") var date: String
    @Option(help: "Only this merchant (mch_...), whatever its auto-settlement setting.") var merchant: String?
    @Option(help: "Sandbox mode only: the time the worker takes as now (RFC 3339), e.g. tomorrow to settle today's payments.") var now: String?

    func validate() throws {
        guard let day = UTCDay(date) else { throw ValidationError("--date must be YYYY-MM-DD") }
        let clock = try now.map { text in
            guard let time = Timestamp.parse(text) else { throw ValidationError("--now must be an RFC 3339 time such as 2026-12-03T00:10:00Z") }
            return time
        } ?? Date()
        guard day < UTCDay(containing: clock) else { throw ValidationError("--date must be a day that has ended (before today, UTC)") }
        if let merchant, !(merchant.hasPrefix("mch_") && merchant.count <= 64) { throw ValidationError("--merchant must be a mch_... id") }
    }

    func run() async throws {
        // A fresh key per invocation: a rerun is a new command, which finds every line settled already.
        let key = "settle:\(date):\(MessageIds.newCommandId())"
        if let merchant {
            try await publishCommand("settlement.merchant", merchantId: merchant, key: key,
                                     data: SettlementMerchantRequest(merchantId: merchant, date: date, now: now), connections)
        } else {
            try await publishCommand("settlement.run", merchantId: nil, key: key, data: SettlementRunRequest(date: date, now: now), connections)
        }
    }
}

/// `payfleet archive run|show`.
struct ArchiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "archive", abstract: "Archive old rows now, or read a table with its archive.",
                                                    subcommands: [Run.self, Show.self])

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Publish archive.run now (the clock does it weekly).")
        @OptionGroup var connections: ConnectionOptions
        @Option(parsing: .upToNextOption, help: "Only these tables (\(ArchiveRequest.archivable.joined(separator: ", "))).") var tables: [String] = []

        func validate() throws {
            for table in tables where !ArchiveRequest.archivable.contains(table) {
                throw ValidationError("unknown table \(table); archivable: \(ArchiveRequest.archivable.joined(separator: ", "))")
            }
        }

        func run() async throws {
            try await publishCommand("archive.run", merchantId: nil, key: "archive:\(MessageIds.newCommandId())",
                                     data: ArchiveRequest(tables: tables.isEmpty ? nil : tables), connections)
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a table's rows since a day, live and archived as one, oldest first (one JSON object per line, with \"archived\").")
        @OptionGroup var connections: ConnectionOptions
        @Argument(help: "The table: \(ArchiveRequest.archivable.joined(separator: ", ")).") var table: String
        @Option(help: "From this UTC day on (YYYY-MM-DD).") var since: String
        @Option(help: "At most this many rows.") var limit = 1_000

        func validate() throws {
            guard ArchiveRequest.archivable.contains(table) else {
                throw ValidationError("unknown table \(table); archivable: \(ArchiveRequest.archivable.joined(separator: ", "))")
            }
            guard UTCDay(since) != nil else { throw ValidationError("--since must be YYYY-MM-DD") }
            guard (1...1_000_000).contains(limit) else { throw ValidationError("--limit must be 1...1000000") }
        }

        func run() async throws {
            guard let archiveTable = ArchiveTable.standard.first(where: { $0.name == table }), let day = UTCDay(since) else { return }
            let rows = try await withDatabase(connections) {
                try await $0.withConnection { try await ArchiveStore().show(archiveTable, since: day.start, limit: limit, on: $0) }
            }
            for row in rows { print(row) }
            FileHandle.standardError.write(Data("\(rows.count) row(s)\n".utf8))
        }
    }
}

/// `payfleet calendar get|set`: the business days settlement pays out on.
struct CalendarCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calendar", abstract: "The business calendar: weekend days and holidays (payout dates skip them).",
        discussion: #"The document is {"weekend": ["saturday", "sunday"], "holidays": ["2026-12-25", ...]}. The settle worker reads it through the shared cache; a set invalidates it at once."#,
        subcommands: [Get.self, Set.self])

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the business calendar (JSON).")
        @OptionGroup var connections: ConnectionOptions
        func run() async throws { try await printDocument(.businessCalendar, connections) }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Replace the business calendar with a JSON file ('-' for stdin).")
        @OptionGroup var connections: ConnectionOptions
        @Argument(help: "The JSON file.") var file: String
        func run() async throws { try await replaceDocument(.businessCalendar, file: file, connections) }
    }
}
