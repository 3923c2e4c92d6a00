import AMQP
import ArgumentParser
import BrokerAdmin
import Contract
import Fleet
import Foundation

/// `payfleet broker-user create --merchant ID | --internal`: a broker user for an upstream system.
struct BrokerUserCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker-user", abstract: "Broker users for upstream systems that publish commands straight to RabbitMQ.",
        subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a broker user (through the management API) and print its credentials once, as JSON.",
            discussion: """
                A merchant's user may publish to payfleet.commands for that merchant only (workers answer command.rejected \
                with code forbidden otherwise), read only m.<merchant>.# events, and use only queues named <username>.<anything>. \
                An --internal user may act for every merchant and read every event. Every command must carry the AMQP user_id \
                property set to the user.
                """)
        @OptionGroup var connections: ConnectionOptions
        @Option(help: "The merchant (mch_...) the user acts for.") var merchant: String?
        @Flag(help: "A user that may act for every merchant (an internal upstream system).") var `internal` = false
        @Option(name: .customLong("management-url"), help: "RabbitMQ management API; credentials from the AMQP URL unless given here (env PAYFLEET_MANAGEMENT_URL).")
        var managementURL: String = environment("PAYFLEET_MANAGEMENT_URL") ?? "http://127.0.0.1:15672"
        @Option(name: .customLong("public-amqp-url"), help: "The broker address to print in amqp_url (env PAYFLEET_PUBLIC_AMQP_URL; default: --amqp-url's).")
        var publicAMQPURL: String = environment("PAYFLEET_PUBLIC_AMQP_URL") ?? ""

        func validate() throws {
            guard (merchant != nil) != `internal` else { throw ValidationError("give exactly one of --merchant ID and --internal") }
            if let merchant, !(merchant.hasPrefix("mch_") && merchant.count <= 64 && !merchant.contains(".")) {
                throw ValidationError("--merchant must be a mch_... id")
            }
        }

        func run() async throws {
            let amqpURL = try AMQPURL(connections.amqpURL)
            let credentials = try await withDatabase(connections) { pool in
                if let merchant, try await pool.query("SELECT 1 FROM merchants WHERE merchant_id = $1", [merchant]).rows.isEmpty {
                    throw ValidationError("no merchant \(merchant)")
                }
                return try await BrokerUsers(amqpURL: amqpURL, managementURL: managementURL, publicAMQPURL: publicAMQPURL, pool: pool)
                    .create(merchantId: merchant, createdBy: "cli")
            }
            print(try CanonicalJSON.encode(credentials))
        }
    }
}
