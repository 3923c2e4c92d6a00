import ArgumentParser
import Fleet
import PaymentServices
import Workers

/// `payfleet-timeout`: consumes `payfleet.timeout` (the pending-payment timeout sweep).
@main
struct TimeoutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payfleet-timeout",
        abstract: "The timeout worker: consumes payfleet.timeout and ends payments pending too long (payment.timeout).",
        discussion: "payfleet-clock publishes the sweep every 5 minutes; each due payment becomes its own command, so replicas share a sweep.")

    @OptionGroup var options: WorkerOptions
    @OptionGroup var payments: PaymentOptions
    @OptionGroup var sweeps: SweepOptions

    func run() async throws {
        try await WorkerHost.run(SweepWorker.timeout(payments: payments, sweeps: sweeps), options: options)
    }
}
