import ArgumentParser
import Fleet
import PaymentServices
import Workers

/// `payfleet-authorize`: consumes `payfleet.authorize` and creates payments (`payment.create`).
@main
struct AuthorizeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payfleet-authorize",
        abstract: "The authorize worker: consumes payfleet.authorize and creates payments (payment.create).",
        discussion: "Scale it by running more replicas; every command takes effect exactly once however often it is delivered.")

    @OptionGroup var options: WorkerOptions
    @OptionGroup var payments: PaymentOptions

    func run() async throws {
        try await WorkerHost.run(AuthorizeWorker(payments: payments), options: options)
    }
}
