import ArgumentParser
import Fleet

/// Sandbox mode, for the workers outside the payment path (settle, export): their commands may
/// carry `now` to move the clock, like Stripe's test clocks.
public struct SandboxFlag: ParsableArguments, Sendable {
    @Flag(name: .customLong("sandbox"), inversion: .prefixedNo,
          help: "Sandbox mode: commands may carry \"now\" to move time (env PAYFLEET_SANDBOX=1; off by default, on in deploy/local).")
    public var enabled: Bool = ["1", "true", "yes", "on"].contains((environment("PAYFLEET_SANDBOX") ?? "").lowercased())

    public init() {}
}
