import AMQP
import Foundation
import Logging
import Postgres
import Redis
import Payments
import ServiceLifecycle
import Store

/// The shared clients and live settings a worker's handlers may use.
public struct WorkerResources: Sendable {
    public let postgres: PostgresPool
    public let redis: RedisClient
    /// Configuration documents and the risk blacklist through the shared cache.
    public let configuration: Configuration
    /// The routing table of `settings`, reloaded within about a second of a change.
    public let routing: HotSetting<RoutingConfig>
    /// The FX table of `settings` over the defaults, reloaded within about a second of a change.
    public let fx: HotSetting<FXTable>
    /// Every channel's live outcomes and open circuits (shared in Redis), refreshed every 500 ms.
    public let channels: HotSetting<LiveChannels>
    public let logger: Logger
}

/// Runs one worker process: connects, declares the topology, and runs the consumer, the outbox
/// relay and the health server as services with graceful shutdown on SIGTERM/SIGINT.
/// Each worker executable's `main` is a call to `WorkerHost.run`.
public enum WorkerHost {
    public static func run(name: String, queue: String, options: WorkerOptions,
                           handlers: @Sendable (WorkerResources, CommandWorker) -> CommandWorker) async throws {
        let logger = FleetLogging.bootstrap(level: options.connections.logLevel, label: name)
        FleetMetrics.bootstrap()
        let topology = try options.connections.topology()
        let url = try AMQPURL(options.connections.amqpURL)

        let pool = PostgresPool(configuration: try PostgresConfiguration(url: options.connections.databaseURL),
                                size: options.concurrency + 2, logger: logger)
        let redis = try RedisClient(url: options.connections.redisURL, poolSize: max(4, options.concurrency / 2), logger: logger)
        let publisher = AMQPConnection(configuration: AMQPConfiguration(url: url, connectionName: "\(name) publisher",
                                                                        confirms: true, topology: topology), logger: logger)
        let consumer = AMQPConnection(configuration: AMQPConfiguration(url: url, connectionName: "\(name) consumer",
                                                                       prefetch: UInt16(max(options.prefetch, options.concurrency)),
                                                                       consumes: [ConsumeSpec(queue: queue)], topology: topology),
                                      logger: logger)
        let relay = OutboxRelay(pool: pool, publisher: publisher, logger: logger)
        let base = CommandWorker(queue: queue, consumer: consumer, publisher: publisher, pool: pool, relay: relay,
                                 retry: RetryPolicy(maxRetries: options.maxRetries), concurrency: options.concurrency, logger: logger)
        // Configuration comes through the shared cache (RULES "Caching"); a write invalidates the
        // entry, and every process notices the new version within a second.
        let configuration = Configuration(redis: redis)
        let routing = await HotSetting(name: "routing", initial: RoutingConfig.defaults, logger: logger,
                                       version: { try await configuration.version(of: .routing, pool: pool) },
                                       load: { try await configuration.document(.routing, pool: pool) })
        let fx = await HotSetting(name: "fx", initial: FXTable.defaults, logger: logger,
                                  version: { try await configuration.version(of: .fx, pool: pool) },
                                  load: {
                                      let (table, version) = try await configuration.document(.fx, pool: pool)
                                      return (table.overDefaults(), version)
                                  })
        let channelStats = ChannelStatsStore(redis: redis)
        let channels = await HotSetting(name: "channel stats", initial: LiveChannels(), interval: .milliseconds(500), logger: logger,
                                        version: nil,
                                        load: { (LiveChannels(try await channelStats.snapshot(routing.current.channels.map(\.name))), 0) })
        let worker = handlers(WorkerResources(postgres: pool, redis: redis, configuration: configuration, routing: routing,
                                                      fx: fx, channels: channels, logger: logger), base)
        let health = HealthRoutes.server(host: options.healthHost, port: options.healthPort, checks: [
            .amqp("broker", consumer), .amqp("broker_publisher", publisher), .postgres(pool), .redis(redis),
        ], logger: logger)

        logger.info("starting", metadata: ["queue": "\(queue)", "health": "http://\(options.healthHost):\(options.healthPort)"])
        // Services stop in reverse order: the consumer first, then the relay flushes, then health.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: health), .init(service: routing), .init(service: fx), .init(service: channels), .init(service: relay),
        ]
        if options.limitSyncInterval > 0 {
            let record = LimitRecord(ledger: LimitLedger(redis: redis), pool: pool)
            services.append(.init(service: LimitSyncService(record: record, interval: .seconds(options.limitSyncInterval), logger: logger)))
        }
        services.append(.init(service: worker))
        var group = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        // Past the deadline a graceful stop becomes a cancellation; unacked work is redelivered.
        group.maximumGracefulShutdownDuration = .seconds(options.shutdownTimeout)
        group.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: group).run()
        await consumer.close()
        await publisher.close()
        await redis.close()
        await pool.close()
        logger.info("stopped")
    }
}


/// Live routing inputs of all channels: the window's stats and the open circuits.
public struct LiveChannels: Sendable {
    public var stats: [String: ChannelStats] = [:]
    public var open: Set<String> = []
    public init() {}
    init(_ snapshot: (stats: [String: ChannelStats], open: Set<String>)) {
        stats = snapshot.stats
        open = snapshot.open
    }
}
