import Fleet
import PaymentServices
import Store

/// The authorize worker's setup: `payfleet.authorize`, taking `payment.create`, with the live
/// payment settings and the limit sync.
public struct AuthorizeWorker: WorkerSetup {
    public let name = "payfleet-authorize"
    public let queue: String? = "payfleet.authorize"
    let payments: PaymentOptions

    public init(payments: PaymentOptions) { self.payments = payments }

    public func assemble(_ environment: WorkerEnvironment) async throws -> WorkerAssembly {
        let settings = await PaymentSettings(postgres: environment.postgres, redis: environment.redis, logger: environment.logger)
        var assembly = WorkerAssembly()
        settings.services.forEach { assembly.run($0) }
        let ledger = LimitLedger(redis: environment.redis)
        if payments.limitSyncInterval > 0 {
            assembly.run(LimitSyncService(record: LimitRecord(ledger: ledger, pool: environment.postgres),
                                          interval: .seconds(payments.limitSyncInterval), clock: environment.clock,
                                          logger: environment.logger))
        }
        assembly.handle(AuthorizeHandler(ledger: ledger, pool: environment.postgres,
                                         routing: { settings.routing.current }, liveChannels: { settings.channels.current },
                                         fx: { settings.fx.current }, logger: environment.logger,
                                         clock: { environment.clock.now }))
        return assembly
    }
}
