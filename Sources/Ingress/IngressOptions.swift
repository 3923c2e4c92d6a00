import ArgumentParser
import Fleet

/// Settings of `payfleet-ingress`: flags, each defaulting to its environment variable.
public struct IngressOptions: ParsableArguments, Sendable {
    @OptionGroup public var connections: ConnectionOptions

    @Option(name: .customLong("http-port"), help: "HTTP port (env PAYFLEET_HTTP_PORT).")
    public var httpPort: Int = Int(environment("PAYFLEET_HTTP_PORT") ?? "") ?? 8080

    @Option(name: .customLong("http-host"), help: "Address to bind (env PAYFLEET_HTTP_HOST).")
    public var httpHost: String = environment("PAYFLEET_HTTP_HOST") ?? "127.0.0.1"

    @Option(name: .customLong("admin-token"), help: "Bearer token of the admin routes (env PAYFLEET_ADMIN_TOKEN; required).")
    public var adminToken: String = environment("PAYFLEET_ADMIN_TOKEN") ?? ""

    @Option(name: .customLong("channel-secret"), help: "Secret the channels sign notify bodies with, HMAC-SHA256 in X-Channel-Signature (env PAYFLEET_CHANNEL_SECRET; without it notify answers 503).")
    public var channelSecret: String = environment("PAYFLEET_CHANNEL_SECRET") ?? ""

    @Option(name: .customLong("reply-timeout-ms"), help: "How long a command route waits for the outcome before answering 202 (env PAYFLEET_REPLY_TIMEOUT_MS).")
    public var replyTimeoutMilliseconds: Int = Int(environment("PAYFLEET_REPLY_TIMEOUT_MS") ?? "") ?? 5_000

    @Option(name: .customLong("database-pool-size"), help: "PostgreSQL connections (env PAYFLEET_DATABASE_POOL_SIZE).")
    public var databasePoolSize: Int = Int(environment("PAYFLEET_DATABASE_POOL_SIZE") ?? "") ?? 16

    @Option(name: .customLong("confirm-timeout-ms"), help: "How long a command route waits for the broker's publisher confirm before answering 503 (env PAYFLEET_CONFIRM_TIMEOUT_MS).")
    public var confirmTimeoutMilliseconds: Int = Int(environment("PAYFLEET_CONFIRM_TIMEOUT_MS") ?? "") ?? 5_000

    @Option(name: .customLong("management-url"), help: "RabbitMQ management API, for making broker users; credentials from the AMQP URL unless given here (env PAYFLEET_MANAGEMENT_URL).")
    public var managementURL: String = environment("PAYFLEET_MANAGEMENT_URL") ?? "http://127.0.0.1:15672"

    @Option(name: .customLong("public-amqp-url"), help: "The broker address handed out with new broker credentials, without credentials (env PAYFLEET_PUBLIC_AMQP_URL; default: the ingress's own broker address).")
    public var publicAMQPURL: String = environment("PAYFLEET_PUBLIC_AMQP_URL") ?? ""

    @Option(name: .customLong("unauthenticated-per-minute"), help: "Answers of 401 a client address may get in a minute before its requests get 429 for the rest of it (env PAYFLEET_UNAUTHENTICATED_PER_MINUTE).")
    public var unauthenticatedPerMinute: Int = Int(environment("PAYFLEET_UNAUTHENTICATED_PER_MINUTE") ?? "") ?? 60

    @Flag(name: .customLong("print-routes"), help: "Print every route (METHOD /path) and exit; the OpenAPI document must list the same.")
    public var printRoutes = false

    public init() {}

    public mutating func validate() throws {
        guard adminToken.count >= 16 else {
            throw ValidationError("an admin token of at least 16 characters is required (--admin-token or PAYFLEET_ADMIN_TOKEN)")
        }
        guard (1...65_535).contains(httpPort) else { throw ValidationError("--http-port must be 1...65535") }
        guard channelSecret.isEmpty || channelSecret.count >= 16 else {
            throw ValidationError("a channel secret must have at least 16 characters (--channel-secret or PAYFLEET_CHANNEL_SECRET)")
        }
        guard replyTimeoutMilliseconds >= 0 else { throw ValidationError("--reply-timeout-ms must be >= 0") }
        guard unauthenticatedPerMinute >= 1 else { throw ValidationError("--unauthenticated-per-minute must be >= 1") }
        guard confirmTimeoutMilliseconds >= 100 else { throw ValidationError("--confirm-timeout-ms must be >= 100") }
    }
}
