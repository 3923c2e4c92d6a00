import ArgumentParser
import Fleet
import PaymentServices
import Workers

/// `payfleet-capture`: consumes `payfleet.capture` (captures, cancels, refunds).
@main
struct CaptureCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payfleet-capture",
        abstract: "The capture worker: consumes payfleet.capture (preauth.capture, preauth.cancel, payment.refund).",
        discussion: "Scale it by running more replicas; every command takes effect exactly once however often it is delivered.")

    @OptionGroup var options: WorkerOptions
    @OptionGroup var payments: PaymentOptions

    func run() async throws {
        try await WorkerHost.run(CaptureWorker(payments: payments), options: options)
    }
}
