import ArgumentParser
import Ingress

/// `payfleet-ingress`: the HTTP API (CONTRACT §4).
@main
struct IngressCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payfleet-ingress",
        abstract: "The PayFleet HTTP ingress: authenticates merchants and publishes commands to RabbitMQ.")

    @OptionGroup var options: IngressOptions

    func run() async throws { try await IngressApp.run(options: options) }
}
