import ArgumentParser
import Fleet
import Postgres
import Store

/// Settings of `payfleet-export`.
public struct ExportOptions: ParsableArguments, Sendable {
    @OptionGroup public var sandbox: SandboxFlag

    @Option(name: .customLong("export-chunk-rows"), help: "Rows per chunk of an export file (each chunk commits with its progress; env PAYFLEET_EXPORT_CHUNK_ROWS).")
    public var chunkRows: Int = Int(environment("PAYFLEET_EXPORT_CHUNK_ROWS") ?? "") ?? 5_000

    @Option(name: .customLong("export-slice-seconds"), help: "How long one delivery writes before the export continues in a follow-up command (env PAYFLEET_EXPORT_SLICE_SECONDS).")
    public var sliceSeconds: Int = Int(environment("PAYFLEET_EXPORT_SLICE_SECONDS") ?? "") ?? 20

    @Option(name: .customLong("export-keep-hours"), help: "Hours an export stays downloadable (env PAYFLEET_EXPORT_KEEP_HOURS; RULES: 24).")
    public var keepHours: Int = Int(environment("PAYFLEET_EXPORT_KEEP_HOURS") ?? "") ?? 24

    public init() {}

    public mutating func validate() throws {
        guard (1...100_000).contains(chunkRows) else { throw ValidationError("--export-chunk-rows must be 1...100000") }
        guard (1...1_200).contains(sliceSeconds) else { throw ValidationError("--export-slice-seconds must be 1...1200 (well inside RabbitMQ's consumer_timeout)") }
        guard (1...720).contains(keepHours) else { throw ValidationError("--export-keep-hours must be 1...720") }
    }
}

/// `payfleet-export`: consumes `payfleet.export` (`export.run`, `export.cleanup`).
public struct ExportWorker: WorkerSetup {
    public let name = "payfleet-export"
    public let queue: String? = "payfleet.export"
    let options: ExportOptions

    public init(options: ExportOptions) { self.options = options }

    public func assemble(_ environment: WorkerEnvironment) async throws -> WorkerAssembly {
        let storage = PostgresExportStorage(pool: environment.postgres)
        var assembly = WorkerAssembly()
        let reads = PostgresPool(configuration: try PostgresConfiguration(url: environment.options.connections.databaseURL),
                                 size: min(environment.options.concurrency, 4), logger: environment.logger)
        assembly.handle(ExportHandler(pool: environment.postgres, reads: reads, clock: environment.clock, options: options, storage: storage,
                                      digests: ExportDigests(), logger: environment.logger))
        assembly.handle(ExportCleanupHandler(clock: environment.clock, options: options, storage: storage))
        return assembly
    }
}
