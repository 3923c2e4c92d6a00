import Fleet
import PaymentServices

/// The capture worker's setup: `payfleet.capture`, taking `preauth.capture`, `preauth.cancel` and
/// `payment.refund`. It routes nothing, so it polls no routing settings.
public struct CaptureWorker: WorkerSetup {
    public let name = "payfleet-capture"
    public let queue: String? = "payfleet.capture"
    let payments: PaymentOptions

    public init(payments: PaymentOptions) { self.payments = payments }

    public func assemble(_ environment: WorkerEnvironment) async throws -> WorkerAssembly {
        let context = try PaymentContext(environment: environment, options: payments)
        var assembly = WorkerAssembly()
        if let sync = context.limitSync { assembly.run(sync) }
        assembly.handle(CaptureHandler(context: context))
        assembly.handle(CancelHandler(context: context))
        assembly.handle(RefundHandler(context: context))
        return assembly
    }
}
