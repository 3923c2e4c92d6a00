import ArgumentParser
import Fleet
import Store
import Workers

/// `payfleet-authorize`: consumes `payfleet.authorize` and creates payments (`payment.create`).
@main
struct AuthorizeWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payfleet-authorize",
        abstract: "The authorize worker: consumes payfleet.authorize and creates payments (payment.create).",
        discussion: "Scale it by running more replicas; every command takes effect exactly once however often it is delivered.")

    @OptionGroup var options: WorkerOptions

    func run() async throws {
        try await WorkerHost.run(name: "payfleet-authorize", queue: "payfleet.authorize", options: options) { resources, worker in
            worker.handling(AuthorizeHandler(ledger: LimitLedger(redis: resources.redis), pool: resources.postgres,
                                             routing: { resources.routing.current }, liveChannels: { resources.channels.current },
                                             fx: { resources.fx.current }, logger: resources.logger))
        }
    }
}
