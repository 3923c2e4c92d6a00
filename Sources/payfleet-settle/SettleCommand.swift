import ArgumentParser
import Fleet
import Workers

/// `payfleet-settle`: consumes `payfleet.settle` (daily settlement).
@main
struct SettleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payfleet-settle",
        abstract: "The settle worker: consumes payfleet.settle (settlement.run, settlement.merchant).",
        discussion: "payfleet-clock publishes settlement.run daily for yesterday (UTC); `payfleet settle --date D` runs a day by hand. Each merchant's day is its own exactly-once command; a rerun changes nothing.")

    @OptionGroup var options: WorkerOptions
    @OptionGroup var settle: SettleOptions

    func run() async throws {
        try await WorkerHost.run(SettleWorker(options: settle), options: options)
    }
}
