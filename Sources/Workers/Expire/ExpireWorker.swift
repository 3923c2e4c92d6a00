import Fleet
import PaymentServices

/// The expire worker's setup: `payfleet.expire`, taking `preauth.expire` (sweeps and the
/// per-pre-authorization commands they fan out).
public struct ExpireWorker: WorkerSetup {
    public let name = "payfleet-expire"
    public let queue: String? = "payfleet.expire"
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
        assembly.handle(ExpireHandler(context: context, options: sweeps))
        return assembly
    }
}
