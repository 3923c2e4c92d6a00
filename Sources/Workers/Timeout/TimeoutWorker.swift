import Fleet
import PaymentServices

/// The timeout worker's setup: `payfleet.timeout`, taking `payment.timeout` (sweeps and the
/// per-payment commands they fan out).
public struct TimeoutWorker: WorkerSetup {
    public let name = "payfleet-timeout"
    public let queue: String? = "payfleet.timeout"
    let payments: PaymentOptions
    let sweeps: SweepOptions

    public init(payments: PaymentOptions, sweeps: SweepOptions) {
        self.payments = payments
        self.sweeps = sweeps
    }

    public func assemble(_ environment: WorkerEnvironment) async throws -> WorkerAssembly {
        let context = try PaymentContext(environment: environment, options: payments)
        var assembly = WorkerAssembly()
        if let sync = context.limitSync { assembly.run(sync) }
        assembly.handle(TimeoutHandler(context: context, options: sweeps))
        return assembly
    }
}
