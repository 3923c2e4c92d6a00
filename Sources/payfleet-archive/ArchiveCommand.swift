import ArgumentParser
import Fleet
import Workers

/// `payfleet-archive`: consumes `payfleet.archive` (the weekly archive run).
@main
struct ArchiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payfleet-archive",
        abstract: "The archive worker: consumes payfleet.archive (archive.run) and moves old rows to the archive tables.",
        discussion: "payfleet-clock publishes archive.run weekly. Each batch moves and deletes in one transaction; `payfleet archive show TABLE --since D` reads a table and its archive as one.")

    @OptionGroup var options: WorkerOptions
    @OptionGroup var archive: ArchiveOptions

    func run() async throws {
        try await WorkerHost.run(ArchiveWorker(options: archive), options: options)
    }
}
