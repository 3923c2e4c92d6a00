import AMQP
import Foundation
import Logging
import Postgres
import Redis
import ServiceLifecycle

/// The connections and settings every worker process opens, handed to its setup.
public struct WorkerEnvironment: Sendable {
    public let name: String
    public let options: WorkerOptions
    public let postgres: PostgresPool
    public let redis: RedisClient
    /// Publishes with confirms (the outbox relay's connection; also for direct publishes).
    public let publisher: AMQPConnection
    /// Wakes the outbox relay after a write that put rows in the outbox outside a command.
    public let relay: OutboxRelay
    public let clock: WallClock
    public let logger: Logger
}

/// What a worker builds for its queue: the handlers, and the services they need (reloaded
/// settings, background syncs, schedulers), with extra readiness checks.
public struct WorkerAssembly: Sendable {
    var handlers: [HandlerBinding] = []
    var services: [any Service] = []
    var readiness: [ReadinessCheck] = []

    public init() {}

    /// Handles `handler`'s command type on the worker's queue.
    public mutating func handle<H: CommandHandler>(_ handler: H) { handlers.append(HandlerBinding(handler)) }

    /// Runs `service` alongside the consumer: started before it, stopped after it.
    public mutating func run(_ service: any Service) { services.append(service) }

    /// Adds a check to `/readyz`.
    public mutating func ready(when check: ReadinessCheck) { readiness.append(check) }
}

/// One worker executable: the queue it consumes, and how it builds its handlers and services.
/// Adding a worker means writing one of these; the runtime does not change.
public protocol WorkerSetup: Sendable {
    /// The executable's name, e.g. `payfleet-capture` (logs, connection names).
    var name: String { get }
    /// The queue it consumes, or nil for a process that runs services only (the clock).
    var queue: String? { get }
    func assemble(_ environment: WorkerEnvironment) async throws -> WorkerAssembly
}

/// Runs one worker process: connects, declares the topology, and runs the consumer, the outbox
/// relay, the health server and the setup's services, with graceful shutdown on SIGTERM/SIGINT.
/// Each worker executable's `main` is a call to `WorkerHost.run`.
public enum WorkerHost {
    public static func run(_ setup: some WorkerSetup, options: WorkerOptions, clock: WallClock = .system) async throws {
        let name = setup.name
        let logger = FleetLogging.bootstrap(level: options.connections.logLevel, label: name, format: options.connections.logFormat)
        FleetMetrics.bootstrap()
        let topology = try options.connections.topology()
        let url = try AMQPURL(options.connections.amqpURL)

        // A consumer's commands each hold a connection; a process without a queue needs a few.
        let consumes = setup.queue != nil
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: options.connections.databaseURL),
                                size: consumes ? options.concurrency + 2 : 4, logger: logger)
        let redis = try RedisClient(url: options.connections.redisURL,
                                    poolSize: options.redisConnections > 0 ? options.redisConnections : 2, logger: logger)
        let publisher = AMQPConnection(configuration: AMQPConfiguration(url: url, connectionName: "\(name) publisher",
                                                                        confirms: true, topology: topology), logger: logger)
        let relay = OutboxRelay(pool: pool, publisher: publisher, clock: clock, logger: logger)
        let environment = WorkerEnvironment(name: name, options: options, postgres: pool, redis: redis, publisher: publisher,
                                            relay: relay, clock: clock, logger: logger)
        let assembly = try await setup.assemble(environment)

        var checks: [ReadinessCheck] = [.amqp("broker_publisher", publisher), .postgres(pool), .redis(redis)]
        var consumer: AMQPConnection?
        var worker: CommandWorker?
        if let queue = setup.queue {
            let connection = AMQPConnection(configuration: AMQPConfiguration(url: url, connectionName: "\(name) consumer",
                                                                             prefetch: UInt16(max(options.prefetch, options.concurrency)),
                                                                             consumes: [ConsumeSpec(queue: queue)], topology: topology),
                                            logger: logger)
            consumer = connection
            checks.insert(.amqp("broker", connection), at: 0)
            worker = CommandWorker(queue: queue, consumer: connection, publisher: publisher, pool: pool, relay: relay,
                                   retry: RetryPolicy(maxRetries: options.maxRetries), concurrency: options.concurrency,
                                   maxRate: options.maxRate > 0 ? options.maxRate : nil, clock: clock,
                                   policy: PublisherPolicy(fleetUsers: Set([url.user] + options.fleetBrokerUsers),
                                                           directory: BrokerUserDirectory(pool: pool),
                                                           reservedQueues: Set(topology.queues.map(\.name))),
                                   maxMessageBytes: options.maxMessageBytes, groupCommit: options.groupCommitSettings,
                                   commandThreads: options.commandThreads == 1, logger: logger)
                .handling(assembly.handlers)
        }
        let health = HealthRoutes.server(host: options.healthHost, port: options.healthPort, checks: checks + assembly.readiness,
                                         logger: logger)

        logger.info("starting", metadata: ["queue": "\(setup.queue ?? "-")", "health": "http://\(options.healthHost):\(options.healthPort)"])
        // Services stop in reverse order: the consumer first, then the setup's services, then the
        // relay flushes, then health.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: health), .init(service: relay)]
        services += assembly.services.map { .init(service: $0) }
        if let worker { services.append(.init(service: worker)) }
        var group = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // Past the deadline a graceful stop becomes a cancellation; unacked work is redelivered.
        group.maximumGracefulShutdownDuration = .seconds(options.shutdownTimeout)
        group.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: group).run()
        await consumer?.close()
        await publisher.close()
        await redis.close()
        await pool.close()
        logger.info("stopped")
    }
}
