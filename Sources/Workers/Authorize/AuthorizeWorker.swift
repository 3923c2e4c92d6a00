import Fleet
import PaymentServices

/// The authorize worker's setup: `payfleet.authorize`, taking `payment.create`, `preauth.create`
/// and `payment.complete`, with the live payment settings and the limit sync.
public struct AuthorizeWorker: WorkerSetup {
    public let name = "payfleet-authorize"
    public let queue: String? = "payfleet.authorize"
    let payments: PaymentOptions

    public init(payments: PaymentOptions) { self.payments = payments }

    public func assemble(_ environment: WorkerEnvironment) async throws -> WorkerAssembly {
        let context = try PaymentContext(environment: environment, options: payments)
        let settings = await PaymentSettings(postgres: environment.postgres, redis: environment.redis, logger: environment.logger)
        var assembly = WorkerAssembly()
        settings.services.forEach { assembly.run($0) }
        if let sync = context.limitSync { assembly.run(sync) }
        let steps = Authorization(context: context, settings: settings)
        assembly.handle(AuthorizeHandler(steps: steps))
        assembly.handle(PreAuthorizeHandler(steps: steps))
        assembly.handle(CompleteHandler(context: context))
        return assembly
    }
}
