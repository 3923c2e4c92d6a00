import ArgumentParser
import Fleet
import Workers

/// `payfleet-export`: consumes `payfleet.export` (payment exports and their hourly cleanup).
@main
struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payfleet-export",
        abstract: "The export worker: consumes payfleet.export (export.run, export.cleanup) and writes merchants' CSV exports.",
        discussion: "Files are written in chunks that commit with their progress: a killed worker's export resumes from its last chunk. Any ingress replica serves the download.")

    @OptionGroup var options: WorkerOptions
    @OptionGroup var export: ExportOptions

    func run() async throws {
        try await WorkerHost.run(ExportWorker(options: export), options: options)
    }
}
