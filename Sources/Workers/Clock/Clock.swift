import AMQP
import Contract
import Fleet
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Store
import Synchronization

/// `payfleet-clock`: publishes the scheduled work of RULES "Scheduler".
///
/// One clock leads at a time: a Redis lease (`SET NX PX` with a random token, renewed while it
/// runs, released by compare-and-delete at shutdown) taken through `PeriodicTask`. Every tick the
/// leader records the due slots of each task in `scheduled_tasks` (catch-up bounded per task,
/// older missed slots `skipped`), then runs each: `running` under its token, the command published
/// with a confirm under the idempotency key `<task>@<slot>`, then `completed` (or `failed`, tried
/// again later) under the same token. The token fences: a clock that lost its lease cannot finish
/// a slot another took over, and a slot published twice is taken once by the worker's inbox.
public final class Clock: Service, Sendable {
    let tasks: [ScheduledTask]
    let store: ScheduledTaskStore
    let lock: LeaderLock
    let publisher: AMQPConnection
    let clock: WallClock
    let tick: Duration
    let logger: Logger
    /// The latest slot of each task known to be recorded: until the next slot begins, a tick
    /// need not read `scheduled_tasks` to find nothing new to plan.
    private let planned = Mutex<[String: Date]>([:])

    public init(tasks: [ScheduledTask], store: ScheduledTaskStore, lock: LeaderLock, publisher: AMQPConnection, clock: WallClock,
                tick: Duration, logger: Logger) {
        self.tasks = tasks
        self.store = store
        self.lock = lock
        self.publisher = publisher
        self.clock = clock
        self.tick = tick
        self.logger = logger
    }

    static let source = "/payfleet/clock"

    public func run() async throws {
        logger.info("clock running", metadata: ["tasks": "\(tasks.map { "\($0.name) every \($0.every)s" }.joined(separator: ", "))"])
        try await PeriodicTask(name: "clock", interval: tick, lock: lock, runAtStart: true, logger: logger) { context in
            guard let token = context.fencingToken else { return .idle }
            for task in self.tasks { try await self.pass(task, token: token) }
            return .idle
        }.run()
        logger.info("clock stopped")
    }

    /// Records what is due of `task` and runs what is runnable, under `token`.
    func pass(_ task: ScheduledTask, token: String) async throws {
        let now = clock.now
        let current = task.slot(at: now)
        // Plan only when a slot began since the last plan; earlier slots may still need running.
        if planned.withLock({ $0[task.name].map { $0 < current } ?? true }) {
            try await plan(task, now: now)
            planned.withLock { $0[task.name] = current }
        }
        let retryBefore = now.addingTimeInterval(-10), staleBefore = now.addingTimeInterval(-lock.lease.seconds)
        for slot in try await store.runnable(task: task.name, token: token, retryBefore: retryBefore, staleBefore: staleBefore) {
            try await run(task, slot: slot, token: token)
        }
    }

    /// Records the slots of `task` due by `now`: the ones to run, and the ones catch-up skips.
    func plan(_ task: ScheduledTask, now: Date) async throws {
        let plan = task.plan(last: try await store.latestSlot(task: task.name), now: now)
        if !plan.run.isEmpty || !plan.skip.isEmpty {
            try await store.plan(task: task.name, run: plan.run, skip: plan.skip,
                                 reason: "missed while no clock ran; catch-up runs the latest \(task.catchUp)")
            if !plan.skip.isEmpty {
                counter(task, "skipped").increment(by: plan.skip.count)
                logger.warning("skipped missed slots", metadata: ["task": "\(task.name)", "skipped": "\(plan.skip.count)",
                                                                  "oldest": "\(Timestamp.format(plan.skip[0]))"])
            }
        }
    }

    /// Publishes one slot's command and records how it went, under `token`.
    func run(_ task: ScheduledTask, slot: Date, token: String) async throws {
        let key = task.key(for: slot)
        let commandId = MessageIds.commandId(derivedFrom: "clock|\(key)")
        guard try await store.start(task: task.name, slot: slot, token: token, commandId: commandId, at: clock.now) else { return }
        let command = CloudEvent(id: commandId, type: task.name, source: Self.source, time: Timestamp.format(clock.now), merchantId: nil,
                                 idempotencyKey: key, data: task.data(slot))
        let message = AMQPMessage(exchange: Exchanges.commands, routingKey: task.name, body: Array(try CanonicalJSON.encode(command).utf8),
                                  properties: AMQPProperties(contentType: CloudEvent<JSONValue>.contentType, persistent: true,
                                                             messageId: commandId, type: task.name, timestamp: clock.now),
                                  mandatory: true)
        let outcome: String?
        do {
            let confirm = try await publisher.publish(message)
            outcome = confirm == .acked ? nil : "the broker answered \(confirm)"
        } catch {
            outcome = "\(error)"
        }
        let status: ScheduledTaskStore.Status = outcome == nil ? .completed : .failed
        guard try await store.finish(task: task.name, slot: slot, token: token, status: status, error: outcome, at: clock.now) else {
            logger.warning("slot taken over by another clock; not recorded here", metadata: ["task": "\(task.name)", "slot": "\(key)"])
            return
        }
        counter(task, status.rawValue).increment()
        if let outcome {
            logger.error("could not publish a scheduled command; tried again next tick", metadata: ["slot": "\(key)", "error": "\(outcome)"])
        } else {
            logger.info("published scheduled command", metadata: ["slot": "\(key)", "command": "\(commandId)"])
        }
    }

    func counter(_ task: ScheduledTask, _ status: String) -> Metrics.Counter {
        Metrics.Counter(label: "payfleet_clock_slots_total", dimensions: [("task", task.name), ("status", status)])
    }
}

extension Duration {
    var seconds: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
