import ConnectionThread
import Foundation
import Logging

/// One broker connection with one channel, owned by one dedicated thread.
///
/// Promises:
/// - **Never blocks the caller's thread.** rabbitmq-c is blocking and not
///   thread-safe, so a dedicated `Thread` alone touches it; every method here only
///   queues a job for that thread (waking it through a pipe) and, when it is `async`,
///   awaits a continuation. Swift's cooperative pool is never held by a C call.
/// - **Keeps itself connected.** The thread connects, and after any loss reconnects
///   with exponential backoff and jitter, logging each attempt. After every
///   (re)connect it opens channel 1, applies `basic.qos` (if `prefetch` > 0) and
///   `confirm.select` (if `confirms`), declares the configured topology and starts
///   every configured consumer plus those added with `consume(_:)`. Heartbeats are
///   sent and checked, so an idle connection stays up and a silent broker is noticed.
/// - **Channel errors fail one call.** A broker channel error (404, 406, ...) fails the
///   call that caused it with `AMQPError.channelClosed`; the channel is reopened with
///   the same qos, confirm mode and consumers. Publishes in flight on the closed
///   channel fail with `connectionLost`.
/// - **Order.** Jobs run in the order they were posted from one task. Publishes are
///   written in call order; with confirms up to `confirmWindow` are in flight at once
///   and later callers wait their turn.
/// - **Deliveries** from all consumers, across reconnects, arrive on the single
///   `deliveries` stream in the broker's order. Each carries the `generation` of the
///   channel that delivered it.
///
/// Topology declared at runtime with `declare`/`declareQueue`/`bind` is not replayed
/// after a reconnect; put what must always exist in `AMQPConfiguration.topology`.
public final class AMQPConnection: Sendable {
    private let mailbox: Mailbox
    private let stream: AsyncStream<AMQPDelivery>

    /// Starts the connection's thread, which connects in the background; use
    /// `waitUntilConnected(timeout:)` to wait for the first connection.
    public init(configuration: AMQPConfiguration, logger: Logger) {
        let mailbox = Mailbox()
        let (stream, continuation) = AsyncStream<AMQPDelivery>.makeStream(bufferingPolicy: .unbounded)
        self.mailbox = mailbox
        self.stream = stream
        var logger = logger
        logger[metadataKey: "amqp.connection"] = "\(configuration.connectionName)"
        // The OS keeps 15 bytes: the name's last word tells a process's connections apart.
        let name = "amqp-\(configuration.connectionName.split(separator: " ").last.map(String.init) ?? "")"
        NamedThread.start(name) { [logger] in
            let loop = ConnectionLoop(configuration: configuration, logger: logger, mailbox: mailbox,
                                      deliveries: continuation)
            loop.run()
        }
    }

    deinit {
        _ = mailbox.post(.close(nil))
    }

    /// Every delivery of every consumer of this connection, across reconnects. Meant for
    /// one reader. Finishes after `close()`.
    public var deliveries: AsyncStream<AMQPDelivery> { stream }

    /// Whether the connection and its channel are up right now (it may drop at any time).
    public var isConnected: Bool { mailbox.isConnected }

    /// The current channel generation: grows by one on every (re)connect and every
    /// channel reopen after a channel error.
    public var generation: UInt64 { mailbox.generation }

    /// Returns once connected; throws `AMQPError.timeout` after `timeout`, or
    /// `AMQPError.closed` after `close()`.
    public func waitUntilConnected(timeout: Duration) async throws {
        if mailbox.isConnected { return }
        let mailbox = self.mailbox
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await mailbox.waitUntilConnected() }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw AMQPError.timeout
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// Publishes one message.
    ///
    /// With confirms: resolves when the broker acks (`.acked`), nacks (`.nacked`) or
    /// returns it (`.returned`, mandatory and unroutable). Without: `.acked` once written.
    /// Throws `notConnected` if the connection is down (nothing was sent) and
    /// `connectionLost` if it dropped before the confirm (the message may or may not have
    /// arrived: the caller decides whether to publish again).
    public func publish(_ message: AMQPMessage) async throws -> PublishOutcome {
        try await withCheckedThrowingContinuation { continuation in
            if !mailbox.post(.publish(message, continuation)) {
                continuation.resume(throwing: AMQPError.closed)
            }
        }
    }

    /// Acknowledges a delivery (and, with `multiple`, every earlier one). Returns at once.
    /// Dropped silently when the delivery is from an older generation: the broker has
    /// requeued it already.
    public func ack(_ delivery: AMQPDelivery, multiple: Bool = false) {
        _ = mailbox.post(.ack(tag: delivery.deliveryTag, multiple: multiple, generation: delivery.generation))
    }

    /// Rejects a delivery: back to its queue (`requeue`) or dead-lettered/dropped.
    /// Returns at once; dropped silently for older generations, like `ack`.
    public func reject(_ delivery: AMQPDelivery, requeue: Bool) {
        _ = mailbox.post(.reject(tag: delivery.deliveryTag, requeue: requeue, generation: delivery.generation))
    }

    /// Declares exchanges, queues and bindings (in that order). Idempotent when the
    /// declarations match what exists; a mismatch throws `channelClosed(code: 406, ...)`.
    public func declare(_ topology: AMQPTopology) async throws {
        _ = try await call(.declare(topology))
    }

    /// Declares one queue. An empty name asks the broker to name it.
    public func declareQueue(_ queue: AMQPQueueDeclaration) async throws
        -> (name: String, messageCount: UInt32, consumerCount: UInt32) {
        guard case .queue(let name, let messages, let consumers) = try await call(.declareQueue(queue)) else {
            throw AMQPError.connectionLost("unexpected reply to queue.declare")
        }
        return (name, messages, consumers)
    }

    /// Reads a queue's depth and consumer count without creating it; a missing queue
    /// throws `channelClosed(code: 404, ...)`.
    public func declareQueuePassive(_ name: String) async throws -> (messageCount: UInt32, consumerCount: UInt32) {
        guard case .queue(_, let messages, let consumers) = try await call(.declareQueuePassive(name)) else {
            throw AMQPError.connectionLost("unexpected reply to queue.declare")
        }
        return (messages, consumers)
    }

    /// Binds a queue to an exchange.
    public func bind(_ binding: AMQPBinding) async throws {
        _ = try await call(.bind(binding))
    }

    /// Removes a queue binding (no error if it does not exist).
    public func unbind(_ binding: AMQPBinding) async throws {
        _ = try await call(.unbind(binding))
    }

    /// Deletes an exchange (no error if it does not exist).
    public func deleteExchange(_ name: String) async throws {
        _ = try await call(.deleteExchange(name))
    }

    /// Deletes a queue (and forgets this connection's consumers of it).
    public func deleteQueue(_ name: String) async throws {
        _ = try await call(.deleteQueue(name))
    }

    /// Starts a consumer now and after every reconnect; its deliveries arrive on
    /// `deliveries`. Returns the consumer tag.
    public func consume(_ spec: ConsumeSpec) async throws -> String {
        guard case .consumerTag(let tag) = try await call(.consume(spec)) else {
            throw AMQPError.connectionLost("unexpected reply to basic.consume")
        }
        return tag
    }

    /// basic.get: one message from `queue`, or nil when it is empty. Without `noAck` the
    /// delivery must be acked or rejected like a consumed one.
    public func get(queue: String, noAck: Bool) async throws -> AMQPDelivery? {
        guard case .delivery(let delivery) = try await call(.get(queue: queue, noAck: noAck)) else {
            throw AMQPError.connectionLost("unexpected reply to basic.get")
        }
        return delivery
    }

    /// Cancels every consumer (for graceful shutdown): no new deliveries are started,
    /// while acks and publishes keep working. Consumers are not restarted on reconnect.
    public func cancelConsumers() async {
        _ = try? await call(.cancelConsumers)
    }

    /// Waits up to 5 s for outstanding publisher confirms (those still unconfirmed then
    /// fail with `connectionLost`), closes the channel and connection, finishes
    /// `deliveries` and stops the thread. Later calls fail with `AMQPError.closed`.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            if !mailbox.post(.close(continuation)) {
                continuation.resume()
            }
        }
    }

    private func call(_ request: RPCRequest) async throws -> RPCResult {
        try await withCheckedThrowingContinuation { continuation in
            if !mailbox.post(.rpc(request, continuation)) {
                continuation.resume(throwing: AMQPError.closed)
            }
        }
    }
}
