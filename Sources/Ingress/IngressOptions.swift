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
    }
}
