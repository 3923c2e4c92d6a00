import ArgumentParser
import Fleet

/// Settings of the workers that move payments (authorize, capture, timeout, expire), on top of
/// `WorkerOptions`: flags, each defaulting to its environment variable.
public struct PaymentOptions: ParsableArguments, Sendable {
    @Option(name: .customLong("limit-sync-interval"), help: "Seconds between syncs of the Redis limit counters to PostgreSQL, one replica at a time; a counter found below the durable record is repaired (env PAYFLEET_LIMIT_SYNC_INTERVAL; 0 = off).")
    public var limitSyncInterval: Int = Int(environment("PAYFLEET_LIMIT_SYNC_INTERVAL") ?? "") ?? 15

    @Flag(name: .customLong("sandbox"), inversion: .prefixedNo,
          help: "Sandbox mode: sweep commands may carry \"now\" to move time, like Stripe's test clocks (env PAYFLEET_SANDBOX=1; off by default, on in deploy/local).")
    public var sandbox: Bool = ["1", "true", "yes", "on"].contains((environment("PAYFLEET_SANDBOX") ?? "").lowercased())

    @Option(name: .customLong("sandbox-latency-ms"), help: "Latency the sandbox channels add to every call, in milliseconds (env PAYFLEET_SANDBOX_LATENCY_MS).")
    public var sandboxLatencyMilliseconds: Int = Int(environment("PAYFLEET_SANDBOX_LATENCY_MS") ?? "") ?? 0

    @Option(name: .customLong("sandbox-failure-rate"), help: "Share of sandbox channel calls that fail with a transient error, 0...1 (env PAYFLEET_SANDBOX_FAILURE_RATE).")
    public var sandboxFailureRate: Double = Double(environment("PAYFLEET_SANDBOX_FAILURE_RATE") ?? "") ?? 0

    public init() {}

    public mutating func validate() throws {
        guard limitSyncInterval >= 0 else { throw ValidationError("--limit-sync-interval must be >= 0") }
        guard sandboxLatencyMilliseconds >= 0, sandboxLatencyMilliseconds <= 60_000 else {
            throw ValidationError("--sandbox-latency-ms must be 0...60000")
        }
        guard (0...1).contains(sandboxFailureRate) else { throw ValidationError("--sandbox-failure-rate must be 0...1") }
    }
}
