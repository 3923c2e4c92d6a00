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
    /// The routing table of `settings`, reloaded within about a second of a change.
    public let routing: HotSetting<RoutingConfig>
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
        let settings = SettingsStore()
        let routing = await HotSetting(name: SettingsStore.routing, initial: RoutingConfig.defaults, logger: logger,
                                       version: { try await pool.withConnection { try await settings.version(of: SettingsStore.routing, on: $0) } },
                                       load: { try await pool.withConnection { try await settings.routing(on: $0) } })
        let channelStats = ChannelStatsStore(redis: redis)
        let channels = await HotSetting(name: "channel stats", initial: LiveChannels(), interval: .milliseconds(500), logger: logger,
                                        version: nil,
                                        load: { (LiveChannels(try await channelStats.snapshot(routing.current.channels.map(\.name))), 0) })
        let worker = handlers(WorkerResources(postgres: pool, redis: redis, routing: routing, channels: channels, logger: logger), base)
        let health = HealthRoutes.server(host: options.healthHost, port: options.healthPort, checks: [
            .amqp("broker", consumer), .amqp("broker_publisher", publisher), .postgres(pool), .redis(redis),
        ], logger: logger)

        logger.info("starting", metadata: ["queue": "\(queue)", "health": "http://\(options.healthHost):\(options.healthPort)"])
        // Services stop in reverse order: the consumer first, then the relay flushes, then health.
        var configuration = ServiceGroupConfiguration(
            services: [.init(service: health), .init(service: routing), .init(service: channels), .init(service: relay),
                       .init(service: worker)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        // Past the deadline a graceful stop becomes a cancellation; unacked work is redelivered.
        configuration.maximumGracefulShutdownDuration = .seconds(options.shutdownTimeout)
        configuration.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: configuration).run()
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
