import Fleet
import PaymentServices

/// The setup of a sweeping worker: one queue, one sweeping command type, the limit sync.
/// `payfleet-timeout` takes `payment.timeout` on `payfleet.timeout`; `payfleet-expire` takes
/// `preauth.expire` on `payfleet.expire` (sweeps and the per-resource commands they fan out).
public struct SweepWorker: WorkerSetup {
    public let name: String
    public let queue: String?
    let payments: PaymentOptions
    let sweeps: SweepOptions
    let handler: @Sendable (PaymentContext, SweepOptions, inout WorkerAssembly) -> Void

    /// `payfleet-timeout`: ends payments left pending too long.
    public static func timeout(payments: PaymentOptions, sweeps: SweepOptions) -> SweepWorker {
        SweepWorker(name: "payfleet-timeout", queue: "payfleet.timeout", payments: payments, sweeps: sweeps) { context, sweeps, assembly in
            assembly.handle(TimeoutHandler(context: context, options: sweeps))
        }
    }

    /// `payfleet-expire`: ends pre-authorizations past `expires_at`.
    public static func expire(payments: PaymentOptions, sweeps: SweepOptions) -> SweepWorker {
        SweepWorker(name: "payfleet-expire", queue: "payfleet.expire", payments: payments, sweeps: sweeps) { context, sweeps, assembly in
            assembly.handle(ExpireHandler(context: context, options: sweeps))
        }
    }

    public func assemble(_ environment: WorkerEnvironment) async throws -> WorkerAssembly {
        let context = try PaymentContext(environment: environment, options: payments)
        var assembly = WorkerAssembly()
        if let sync = context.limitSync { assembly.run(sync) }
        handler(context, sweeps, &assembly)
        return assembly
    }
}
