import ArgumentParser
import Fleet
import PaymentServices
import Workers

/// `payfleet-expire`: consumes `payfleet.expire` (the pre-authorization expiry sweep).
@main
struct ExpireCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payfleet-expire",
        abstract: "The expire worker: consumes payfleet.expire and ends pre-authorizations past expires_at (preauth.expire).",
        discussion: "payfleet-clock publishes the sweep every 30 minutes; each due pre-authorization becomes its own command.")

    @OptionGroup var options: WorkerOptions
    @OptionGroup var payments: PaymentOptions
    @OptionGroup var sweeps: SweepOptions

    func run() async throws {
        try await WorkerHost.run(SweepWorker.expire(payments: payments, sweeps: sweeps), options: options)
    }
}
