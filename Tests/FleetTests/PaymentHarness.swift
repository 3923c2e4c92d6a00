import AMQP
import Contract
@testable import Fleet
import Foundation
import PayFleetTesting
@testable import PaymentServices
import Payments
import Postgres
import Redis
import Store
import Synchronization
@testable import Workers

/// A channel whose answers a test scripts, call by call, and which counts the calls.
final class ScriptedChannels: ChannelAdapter {
    enum Step: Sendable {
        case answer(ChannelAnswer)
        /// The adapter throws: the call neither answered nor failed cleanly.
        case fail
    }
    private struct State {
        var steps: [Step]
        var calls: [ChannelRequest] = []
    }
    private let state: Mutex<State>
    /// Runs after each call (a test moves its clock or changes a setting here, between two attempts).
    let afterCall: @Sendable (Int) async -> Void

    /// `steps` are used in order; the last one repeats.
    init(_ steps: [Step], afterCall: @escaping @Sendable (Int) async -> Void = { _ in }) {
        state = Mutex(State(steps: steps))
        self.afterCall = afterCall
    }

    struct Scripted: Error {}

    func call(_ request: ChannelRequest) async throws -> ChannelAnswer {
        let (step, count) = state.withLock { state -> (Step, Int) in
            state.calls.append(request)
            return (state.steps.count > 1 ? state.steps.removeFirst() : state.steps[0], state.calls.count)
        }
        await afterCall(count)
        switch step {
        case .answer(let answer): return answer
        case .fail: throw Scripted()
        }
    }

    func status(channel: String, idempotencyKey: String) async throws -> ChannelStatus { .unknown }

    var calls: [ChannelRequest] { state.withLock { $0.calls } }
}

/// The real authorize handlers on a private queue, with a scripted channel and a clock the test
/// moves: for the reservation holes, which need a channel that fails on one attempt and not on
/// the next, and time that crosses midnight between them.
final class PaymentHarness: Sendable {
    let queue: String
    let pool: PostgresPool
    let redis: RedisClient
    let consumer: AMQPConnection
    let publisher: AMQPConnection
    let time: ManualTime
    let context: PaymentContext
    let settings: PaymentSettings
    let tasks: [Task<Void, Never>]

    init(channels: ScriptedChannels, maxRetries: Int = 3, time: ManualTime = ManualTime()) async throws {
        queue = TestEnvironment.unique("test.payments")
        self.time = time
        pool = try TestEnvironment.postgres(size: 8)
        redis = try TestEnvironment.redis()
        try await Migrations.apply(to: pool, logger: TestEnvironment.logger)
        let topology = try TopologyFile.load(explicitPath: TestEnvironment.topologyPath)
        publisher = try await TestEnvironment.amqp("payment harness publisher")
        try await publisher.declare(topology)
        _ = try await publisher.declareQueue(AMQPQueueDeclaration(name: queue, durable: true, exclusive: false, autoDelete: false,
                                                                  arguments: ["x-queue-type": .string("quorum")]))
        consumer = try await TestEnvironment.amqp("payment harness consumer", confirms: false, prefetch: 8,
                                                  consumes: [ConsumeSpec(queue: queue)])
        let clock = WallClock.manual(time)
        let relay = OutboxRelay(pool: pool, publisher: publisher, clock: clock, logger: TestEnvironment.logger)
        var options = try WorkerOptions.parse([])
        options.concurrency = 4
        let environment = WorkerEnvironment(name: "payment harness", options: options, postgres: pool, redis: redis, publisher: publisher,
                                            relay: relay, clock: clock, logger: TestEnvironment.logger)
        var payments = try PaymentOptions.parse([])
        payments.limitSyncInterval = 0
        context = try PaymentContext(environment: environment, options: payments, channels: channels)
        settings = await PaymentSettings(postgres: pool, redis: redis, logger: TestEnvironment.logger)
        let steps = Authorization(context: context, settings: settings)
        let worker = CommandWorker(queue: queue, consumer: consumer, publisher: publisher, pool: pool, relay: relay,
                                   retry: RetryPolicy(maxRetries: maxRetries), concurrency: 4, clock: clock,
                               policy: try TestEnvironment.publisherPolicy(pool), logger: TestEnvironment.logger)
            .handling(AuthorizeHandler(steps: steps))
        tasks = [Task { try? await worker.run() }, Task { try? await relay.run() }]
    }

    func send(_ command: CloudEvent<PaymentRequest>) async throws {
        try await Fixtures.publishAll([try Fixtures.message(command, exchange: "", routingKey: queue)], on: publisher)
    }

    func close() async {
        for task in tasks { task.cancel() }
        await consumer.close()
        try? await publisher.deleteQueue(queue)
        await publisher.close()
        await context.sidePool.close()
        await redis.close()
        await pool.close()
    }
}
