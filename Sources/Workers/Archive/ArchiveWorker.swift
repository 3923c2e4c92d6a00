import ArgumentParser
import Foundation
import Fleet
import Store

/// Settings of `payfleet-archive`: RULES' retention and batch sizes, as configuration.
public struct ArchiveOptions: ParsableArguments, Sendable {
    @Option(name: .customLong("archive-retention"), help: "Days each table keeps rows live, as table=days,... (env PAYFLEET_ARCHIVE_RETENTION; RULES: payment_callbacks=90,notifications=30,audit_logs=180,risk_events=90).")
    public var retention: String = environment("PAYFLEET_ARCHIVE_RETENTION") ?? ""

    @Option(name: .customLong("archive-batch"), help: "Rows per batch (one transaction), as table=rows,... (env PAYFLEET_ARCHIVE_BATCH; RULES: payment_callbacks=1000,notifications=1000,audit_logs=500,risk_events=1000).")
    public var batch: String = environment("PAYFLEET_ARCHIVE_BATCH") ?? ""

    @Option(name: .customLong("archive-pause-ms"), help: "Pause between batches, in milliseconds, so live traffic is not blocked (env PAYFLEET_ARCHIVE_PAUSE_MS).")
    public var pauseMilliseconds: Int = Int(environment("PAYFLEET_ARCHIVE_PAUSE_MS") ?? "") ?? 100

    @Option(name: .customLong("archive-slice-seconds"), help: "How long one delivery archives before it hands the rest of the run to a follow-up command (env PAYFLEET_ARCHIVE_SLICE_SECONDS).")
    public var sliceSeconds: Int = Int(environment("PAYFLEET_ARCHIVE_SLICE_SECONDS") ?? "") ?? 60

    @Option(name: .customLong("inbox-retention-days"), help: "Days a command's inbox row (its idempotency record) is kept; a redelivery after that is taken as a new command (env PAYFLEET_INBOX_RETENTION_DAYS).")
    public var inboxRetentionDays: Int = Int(environment("PAYFLEET_INBOX_RETENTION_DAYS") ?? "") ?? 7

    @Option(name: .customLong("http-idempotency-hours"), help: "Hours an HTTP Idempotency-Key record is kept (env PAYFLEET_HTTP_IDEMPOTENCY_HOURS; CONTRACT: 24).")
    public var httpIdempotencyHours: Int = Int(environment("PAYFLEET_HTTP_IDEMPOTENCY_HOURS") ?? "") ?? 24

    @Option(name: .customLong("prune-batch"), help: "Rows per table one retention.prune delivery deletes before it hands on to a follow-up (env PAYFLEET_PRUNE_BATCH).")
    public var pruneBatch: Int = Int(environment("PAYFLEET_PRUNE_BATCH") ?? "") ?? 10_000

    @OptionGroup public var sandbox: SandboxFlag

    public init() {}

    public mutating func validate() throws {
        guard inboxRetentionDays >= 1 else { throw ValidationError("--inbox-retention-days must be >= 1") }
        guard httpIdempotencyHours >= 24 else { throw ValidationError("--http-idempotency-hours must be >= 24 (CONTRACT keeps keys 24 h)") }
        guard (1...1_000_000).contains(pruneBatch) else { throw ValidationError("--prune-batch must be 1...1000000") }
        guard (0...60_000).contains(pauseMilliseconds) else { throw ValidationError("--archive-pause-ms must be 0...60000") }
        guard (1...1_200).contains(sliceSeconds) else { throw ValidationError("--archive-slice-seconds must be 1...1200 (well inside RabbitMQ's consumer_timeout)") }
        _ = try tables()
    }

    /// RULES' tables with the configured retention and batch sizes.
    public func tables() throws -> [ArchiveTable] {
        let keep = try Self.pairs(retention, flag: "--archive-retention", range: 1...36_500)
        let rows = try Self.pairs(batch, flag: "--archive-batch", range: 1...100_000)
        return ArchiveTable.standard.map { table in
            var table = table
            table.keepDays = keep[table.name] ?? table.keepDays
            table.batch = rows[table.name] ?? table.batch
            return table
        }
    }

    /// `a=1,b=2` over the archivable tables; every value in `range`.
    static func pairs(_ text: String, flag: String, range: ClosedRange<Int>) throws -> [String: Int] {
        var values: [String: Int] = [:]
        let names = ArchiveTable.standard.map(\.name)
        for item in text.split(separator: ",") where !item.trimmingCharacters(in: .whitespaces).isEmpty {
            let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, names.contains(parts[0]), let value = Int(parts[1]), range.contains(value) else {
                throw ValidationError("\(flag): '\(item)' is not table=N with a table of \(names.joined(separator: ", ")) and N in \(range)")
            }
            values[parts[0]] = value
        }
        return values
    }
}

/// `payfleet-archive`: consumes `payfleet.archive` (`archive.run`, `retention.prune`).
public struct ArchiveWorker: WorkerSetup {
    public let name = "payfleet-archive"
    public let queue: String? = "payfleet.archive"
    let options: ArchiveOptions

    public init(options: ArchiveOptions) { self.options = options }

    public func assemble(_ environment: WorkerEnvironment) async throws -> WorkerAssembly {
        var assembly = WorkerAssembly()
        assembly.handle(ArchiveHandler(pool: environment.postgres, clock: environment.clock, options: options, logger: environment.logger))
        assembly.handle(RetentionHandler(clock: environment.clock, options: options, logger: environment.logger))
        return assembly
    }
}
