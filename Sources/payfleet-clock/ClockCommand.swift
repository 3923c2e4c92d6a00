import ArgumentParser
import Fleet
import Workers

/// `payfleet-clock`: publishes the scheduled work (sweeps, settlement, archive, export cleanup).
@main
struct ClockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payfleet-clock",
        abstract: "The clock: publishes the timeout and expiry sweeps, settlement, archive and export cleanup on schedule.",
        discussion: "Run two for availability: one leads (a Redis lease), the other takes over within the lease. `payfleet schedule list` shows the slots.")

    @OptionGroup var options: WorkerOptions
    @OptionGroup var clock: ClockOptions

    func run() async throws {
        try await WorkerHost.run(ClockWorker(options: clock), options: options)
    }
}
