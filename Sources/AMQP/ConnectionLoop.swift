#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRabbitMQ
import Foundation
import Logging

/// Why a step on the connection failed: the broker closed the channel (the
/// connection survives), or the connection itself is gone.
enum LoopFailure: Error {
    case channel(code: Int, text: String)
    case connection(String)
}

/// The one owner of a rabbitmq-c connection. It is created on, and used only from,
/// the connection's dedicated thread (it is deliberately not Sendable); callers talk
/// to it through the `Mailbox`.
///
/// The loop: read every frame that is ready without blocking, run queued jobs, then
/// poll() the socket and the mailbox's wake-up pipe. Synchronous AMQP methods
/// (declare, consume, ...) use rabbitmq-c's blocking RPC calls on this thread, which
/// keep any other frame that arrives meanwhile in the library's frame queue; those
/// are handled right after the RPC, in order.
final class ConnectionLoop {
    private static let channel: amqp_channel_t = 1

    private let configuration: AMQPConfiguration
    private let logger: Logger
    private let mailbox: Mailbox
    private let deliveries: AsyncStream<AMQPDelivery>.Continuation

    // Connection
    private var connection: amqp_connection_state_t?
    private var heartbeatSeconds = 0
    private var lastInbound = ContinuousClock.now
    private var failedAttempts = 0
    private var nextAttempt = ContinuousClock.now
    /// Grows with every channel (re)open; stamps deliveries so stale acks are dropped.
    private var generation: UInt64 = 0

    // Consumers wanted on every (re)opened channel.
    private struct Consumer {
        var tag: String
        var spec: ConsumeSpec
    }
    private var consumers: [Consumer]
    private var consumerCounter = 0

    // Publisher confirms for the current channel.
    private typealias PublishContinuation = CheckedContinuation<PublishOutcome, any Error>
    private struct Unconfirmed {
        /// Nil once the publish was answered with `confirmTimeout`: a late confirm resolves nothing.
        var continuation: PublishContinuation?
        /// Kept for mandatory publishes only, to recognise the message in a basic.return.
        var message: AMQPMessage?
        var returned: (code: Int, text: String)?
        var deadline: ContinuousClock.Instant
    }
    private var nextSequence: UInt64 = 1
    private var lowestUnconfirmed: UInt64 = 1
    /// Publishes below this sequence are past their confirm deadline (answered already).
    private var expiredThrough: UInt64 = 1
    private var unconfirmed: [UInt64: Unconfirmed] = [:]
    /// Publishes waiting for room in the confirm window, oldest first.
    private struct Waiting {
        var message: AMQPMessage
        var continuation: PublishContinuation
        var deadline: ContinuousClock.Instant
    }
    private var waitingPublishes: [Waiting] = []
    private var waitingHead = 0

    // A message whose method frame has arrived but not yet its header and body.
    private enum ContentOwner {
        case deliver(tag: UInt64, redelivered: Bool, exchange: String, routingKey: String, consumerTag: String)
        case returned(code: Int, text: String, exchange: String, routingKey: String)
        case get(tag: UInt64, redelivered: Bool, exchange: String, routingKey: String,
                 CheckedContinuation<RPCResult, any Error>)
    }
    private struct PendingContent {
        var owner: ContentOwner
        var properties = AMQPProperties()
        var bodySize: Int?
        var body: [UInt8] = []
    }
    private var content: PendingContent?

    // Shutdown
    private var closeRequests: [CheckedContinuation<Void, Never>] = []
    private var closeDeadline: ContinuousClock.Instant?

    init(configuration: AMQPConfiguration, logger: Logger, mailbox: Mailbox,
         deliveries: AsyncStream<AMQPDelivery>.Continuation) {
        self.configuration = configuration
        self.logger = logger
        self.mailbox = mailbox
        self.deliveries = deliveries
        self.consumers = []
        for spec in configuration.consumes {
            consumers.append(Consumer(tag: newConsumerTag(), spec: spec))
        }
    }

    private func newConsumerTag() -> String {
        consumerCounter += 1
        return "\(configuration.connectionName).\(consumerCounter)"
    }

    // MARK: - Main loop

    func run() {
        while true {
            if readyToFinish {
                finish()
                return
            }
            guard let connection else {
                if closeDeadline == nil, .now >= nextAttempt {
                    connect()
                } else {
                    waitForEvents(socket: nil, until: nextAttempt)
                    runJobs()
                }
                continue
            }
            readFrames(connection, limit: 512)
            if content == nil, self.connection != nil { runJobs() }
            expireOverdueConfirms()
            guard let connection = self.connection else { continue }
            if heartbeatSeconds > 0, ContinuousClock.now - lastInbound > .seconds(2 * heartbeatSeconds + 1) {
                dropConnection("no data or heartbeat from the broker for \(2 * heartbeatSeconds) s")
                continue
            }
            if amqp_frames_enqueued(connection) == 0, amqp_data_in_buffer(connection) == 0, !readyToFinish {
                waitForEvents(socket: amqp_get_sockfd(connection), until: nil)
            }
        }
    }

    /// After `close()`: once nothing is left to confirm, or the grace period is over.
    private var readyToFinish: Bool {
        guard let closeDeadline else { return false }
        return connection == nil || (unconfirmed.isEmpty && content == nil) || .now >= closeDeadline
    }

    /// Blocks in poll() until the socket is readable, a job is posted, or a timer is due.
    /// The timeout stays well under the heartbeat interval so rabbitmq-c gets to send
    /// heartbeats (it does so inside the frame-reading call that follows).
    private func waitForEvents(socket: Int32?, until instant: ContinuousClock.Instant?) {
        var timeout: Duration = .seconds(1)
        if heartbeatSeconds > 0 { timeout = min(timeout, .milliseconds(heartbeatSeconds * 250)) }
        if let instant { timeout = min(timeout, instant - .now) }
        if let closeDeadline { timeout = min(timeout, closeDeadline - .now) }
        let milliseconds = max(0, Int32(clamping: timeout.components.seconds * 1000
                + timeout.components.attoseconds / 1_000_000_000_000_000))
        var fds = [pollfd(fd: mailbox.wakeReadFD, events: Int16(POLLIN), revents: 0)]
        if let socket, socket >= 0 { fds.append(pollfd(fd: socket, events: Int16(POLLIN), revents: 0)) }
        let ready = poll(&fds, nfds_t(fds.count), milliseconds)
        if ready > 0, fds.count > 1, fds[1].revents != 0 { lastInbound = .now }
    }

    // MARK: - Jobs

    private func runJobs() {
        for job in mailbox.takeJobs() {
            run(job)
        }
    }

    private func run(_ job: Job) {
        switch job {
        case .publish(let message, let continuation):
            if closeDeadline != nil {
                continuation.resume(throwing: AMQPError.closed)
            } else if connection == nil {
                continuation.resume(throwing: AMQPError.notConnected)
            } else if configuration.confirms
                        && (unconfirmed.count >= configuration.confirmWindow || waitingHead < waitingPublishes.count) {
                waitingPublishes.append(Waiting(message: message, continuation: continuation,
                                                deadline: .now + configuration.confirmTimeout))
            } else {
                send(message, continuation)
            }
        case .ack(let tag, let multiple, let deliveryGeneration):
            guard let connection, deliveryGeneration == generation else { return }
            check(amqp_basic_ack(connection, Self.channel, tag, multiple ? 1 : 0), doing: "basic.ack")
        case .reject(let tag, let requeue, let deliveryGeneration):
            guard let connection, deliveryGeneration == generation else { return }
            check(amqp_basic_reject(connection, Self.channel, tag, requeue ? 1 : 0), doing: "basic.reject")
        case .rpc(let request, let continuation):
            if closeDeadline != nil {
                continuation.resume(throwing: AMQPError.closed)
            } else if connection == nil {
                if case .cancelConsumers = request {
                    consumers.removeAll()
                    continuation.resume(returning: .done)
                } else {
                    continuation.resume(throwing: AMQPError.notConnected)
                }
            } else {
                perform(request, continuation)
            }
        case .close(let continuation):
            if let continuation { closeRequests.append(continuation) }
            if closeDeadline == nil {
                logger.debug("closing AMQP connection")
                closeDeadline = .now + .seconds(5)
                failWaitingPublishes(with: .closed)
            }
        }
    }

    /// A failed write leaves the connection unusable.
    private func check(_ status: Int32, doing what: String) {
        if status != AMQP_STATUS_OK.rawValue {
            dropConnection("\(what) failed: \(statusText(status))")
        }
    }

    // MARK: - Publishing

    private func send(_ message: AMQPMessage, _ continuation: PublishContinuation) {
        guard let connection else {
            continuation.resume(throwing: AMQPError.notConnected)
            return
        }
        let arena = CArena()
        var stamped = message.properties
        if configuration.stampsUserId, stamped.userId == nil { stamped.userId = configuration.url.user }
        var properties = arena.properties(stamped)
        let status = amqp_basic_publish(connection, Self.channel, arena.bytes(message.exchange),
                                        arena.bytes(message.routingKey), message.mandatory ? 1 : 0, 0,
                                        &properties, arena.bytes(message.body))
        withExtendedLifetime(arena) {}
        guard status == AMQP_STATUS_OK.rawValue else {
            let reason = "basic.publish failed: \(statusText(status))"
            continuation.resume(throwing: AMQPError.connectionLost(reason))
            dropConnection(reason)
            return
        }
        if configuration.confirms {
            unconfirmed[nextSequence] = Unconfirmed(continuation: continuation,
                                                    message: message.mandatory ? message : nil,
                                                    deadline: .now + configuration.confirmTimeout)
            nextSequence += 1
        } else {
            continuation.resume(returning: .acked)
        }
    }

    private func sendWaitingPublishes() {
        while waitingHead < waitingPublishes.count, unconfirmed.count < configuration.confirmWindow,
              connection != nil {
            let waiting = waitingPublishes[waitingHead]
            waitingHead += 1
            send(waiting.message, waiting.continuation)
        }
        if waitingHead == waitingPublishes.count {
            waitingPublishes.removeAll(keepingCapacity: true)
            waitingHead = 0
        }
    }

    private func failWaitingPublishes(with error: AMQPError) {
        for waiting in waitingPublishes[waitingHead...] {
            waiting.continuation.resume(throwing: error)
        }
        waitingPublishes.removeAll()
        waitingHead = 0
    }

    /// Answers `confirmTimeout` to every publish past its deadline, in the window or still waiting
    /// for room. Deadlines grow with the sequence, so only the oldest entries need looking at. An
    /// expired publish keeps its place in the window until the broker answers or the channel goes.
    private func expireOverdueConfirms() {
        let now = ContinuousClock.now
        expiredThrough = max(expiredThrough, lowestUnconfirmed)
        while expiredThrough < nextSequence {
            guard let entry = unconfirmed[expiredThrough] else {
                expiredThrough += 1
                continue
            }
            guard entry.deadline <= now else { break }
            entry.continuation?.resume(throwing: AMQPError.confirmTimeout)
            unconfirmed[expiredThrough]?.continuation = nil
            expiredThrough += 1
        }
        while waitingHead < waitingPublishes.count, waitingPublishes[waitingHead].deadline <= now {
            waitingPublishes[waitingHead].continuation.resume(throwing: AMQPError.confirmTimeout)
            waitingHead += 1
        }
        if waitingHead > 0, waitingHead == waitingPublishes.count {
            waitingPublishes.removeAll(keepingCapacity: true)
            waitingHead = 0
        }
    }

    /// basic.ack / basic.nack from the broker, for one publish or (`multiple`) all up to `tag`.
    private func confirm(tag: UInt64, multiple: Bool, acked: Bool) {
        func resolve(_ entry: Unconfirmed?) {
            guard let entry, let continuation = entry.continuation else { return }
            if let returned = entry.returned {
                continuation.resume(returning: .returned(replyCode: returned.code, replyText: returned.text))
            } else {
                continuation.resume(returning: acked ? .acked : .nacked)
            }
        }
        if multiple {
            if lowestUnconfirmed <= tag {
                for sequence in lowestUnconfirmed...tag {
                    resolve(unconfirmed.removeValue(forKey: sequence))
                }
            }
        } else {
            resolve(unconfirmed.removeValue(forKey: tag))
        }
        while lowestUnconfirmed < nextSequence, unconfirmed[lowestUnconfirmed] == nil {
            lowestUnconfirmed += 1
        }
        sendWaitingPublishes()
    }

    /// A basic.return carries no delivery tag, and the broker may confirm other publishes
    /// between a return and the ack of the returned message. Returns come in publish
    /// order, so the returned message is the oldest unconfirmed mandatory publish with the
    /// same exchange, routing key and body that is not already marked returned.
    private func markReturned(exchange: String, routingKey: String, body: [UInt8], code: Int, text: String) {
        guard configuration.confirms else {
            logger.warning("AMQP broker returned an unroutable message",
                           metadata: ["exchange": "\(exchange)", "routingKey": "\(routingKey)", "code": "\(code)"])
            return
        }
        var sequence = lowestUnconfirmed
        while sequence < nextSequence {
            if let entry = unconfirmed[sequence], entry.returned == nil, let message = entry.message,
               message.exchange == exchange, message.routingKey == routingKey, message.body == body {
                unconfirmed[sequence]!.returned = (code, text)
                return
            }
            sequence += 1
        }
        logger.warning("AMQP basic.return matches no publish in flight",
                       metadata: ["exchange": "\(exchange)", "routingKey": "\(routingKey)"])
    }

    private func failUnconfirmed(_ reason: String) {
        for entry in unconfirmed.values {
            entry.continuation?.resume(throwing: AMQPError.connectionLost(reason))
        }
        unconfirmed.removeAll()
    }

    // MARK: - Reading frames

    private func readFrames(_ connection: amqp_connection_state_t, limit: Int) {
        var frame = amqp_frame_t()
        var zero = timeval(tv_sec: 0, tv_usec: 0)
        var count = 0
        while count < limit, self.connection != nil {
            let status = amqp_simple_wait_frame_noblock(connection, &frame, &zero)
            if status == AMQP_STATUS_TIMEOUT.rawValue { break }
            guard status == AMQP_STATUS_OK.rawValue else {
                dropConnection("reading from the broker failed: \(statusText(status))")
                return
            }
            lastInbound = .now
            count += 1
            do {
                try handle(frame)
            } catch {
                handleAsyncFailure(error)
            }
        }
        if let connection = self.connection { amqp_maybe_release_buffers(connection) }
    }

    /// Handles the frames rabbitmq-c queued while a blocking RPC waited for its reply.
    /// They all arrived before the reply, so handling them now keeps the broker's order.
    private func drainQueuedFrames() throws {
        guard let connection else { return }
        var frame = amqp_frame_t()
        var zero = timeval(tv_sec: 0, tv_usec: 0)
        while amqp_frames_enqueued(connection) != 0 {
            let status = amqp_simple_wait_frame_noblock(connection, &frame, &zero)
            guard status == AMQP_STATUS_OK.rawValue else {
                throw LoopFailure.connection("reading queued frames failed: \(statusText(status))")
            }
            try handle(frame)
        }
    }

    private func handleAsyncFailure(_ error: any Error) {
        switch error as? LoopFailure {
        case .channel(let code, let text):
            logger.warning("AMQP channel closed by broker, reopening",
                           metadata: ["code": "\(code)", "reason": "\(text)"])
            do {
                try restoreChannel()
            } catch {
                dropConnection("reopening the channel failed: \(error)")
            }
        case .connection(let reason):
            dropConnection(reason)
        case nil:
            dropConnection("\(error)")
        }
    }

    private func handle(_ frame: amqp_frame_t) throws {
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            try handle(method: frame.payload.method, channel: frame.channel)
        case AMQP_FRAME_HEADER:
            guard var pending = content, pending.bodySize == nil else {
                throw LoopFailure.connection("unexpected content header frame")
            }
            if let decoded = frame.payload.properties.decoded {
                pending.properties = decodeProperties(decoded.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee)
            }
            pending.bodySize = Int(frame.payload.properties.body_size)
            pending.body.reserveCapacity(pending.bodySize ?? 0)
            content = pending
            completeContentIfDone()
        case AMQP_FRAME_BODY:
            guard content?.bodySize != nil else { throw LoopFailure.connection("unexpected content body frame") }
            content!.body.append(contentsOf: [UInt8](amqpBytes: frame.payload.body_fragment))
            completeContentIfDone()
        default:
            break
        }
    }

    private func completeContentIfDone() {
        guard let pending = content, let size = pending.bodySize, pending.body.count >= size else { return }
        content = nil
        switch pending.owner {
        case .deliver(let tag, let redelivered, let exchange, let routingKey, let consumerTag):
            deliveries.yield(AMQPDelivery(deliveryTag: tag, redelivered: redelivered, exchange: exchange,
                                          routingKey: routingKey, consumerTag: consumerTag, body: pending.body,
                                          properties: pending.properties, generation: generation))
        case .returned(let code, let text, let exchange, let routingKey):
            markReturned(exchange: exchange, routingKey: routingKey, body: pending.body, code: code, text: text)
        case .get(let tag, let redelivered, let exchange, let routingKey, let continuation):
            continuation.resume(returning: .delivery(AMQPDelivery(
                deliveryTag: tag, redelivered: redelivered, exchange: exchange, routingKey: routingKey,
                consumerTag: "", body: pending.body, properties: pending.properties, generation: generation)))
        }
    }

    private func handle(method: amqp_method_t, channel: amqp_channel_t) throws {
        // Only connection-level (channel 0) methods may come between a message's frames.
        guard content == nil || channel == 0 else {
            throw LoopFailure.connection("unexpected method frame inside a message")
        }
        let decoded = method.decoded
        func payload<T>(_ type: T.Type) -> T { decoded!.assumingMemoryBound(to: T.self).pointee }
        switch method.id {
        case PAYFLEET_BASIC_DELIVER:
            let deliver = payload(amqp_basic_deliver_t.self)
            content = PendingContent(owner: .deliver(
                tag: deliver.delivery_tag, redelivered: deliver.redelivered != 0,
                exchange: String(amqpBytes: deliver.exchange), routingKey: String(amqpBytes: deliver.routing_key),
                consumerTag: String(amqpBytes: deliver.consumer_tag)))
        case PAYFLEET_BASIC_RETURN:
            let returned = payload(amqp_basic_return_t.self)
            content = PendingContent(owner: .returned(
                code: Int(returned.reply_code), text: String(amqpBytes: returned.reply_text),
                exchange: String(amqpBytes: returned.exchange), routingKey: String(amqpBytes: returned.routing_key)))
        case PAYFLEET_BASIC_ACK:
            let ack = payload(amqp_basic_ack_t.self)
            confirm(tag: ack.delivery_tag, multiple: ack.multiple != 0, acked: true)
        case PAYFLEET_BASIC_NACK:
            let nack = payload(amqp_basic_nack_t.self)
            confirm(tag: nack.delivery_tag, multiple: nack.multiple != 0, acked: false)
        case PAYFLEET_BASIC_CANCEL:
            // The broker cancelled a consumer (its queue was deleted): do not re-consume it.
            let tag = String(amqpBytes: payload(amqp_basic_cancel_t.self).consumer_tag)
            if let index = consumers.firstIndex(where: { $0.tag == tag }) {
                let queue = consumers.remove(at: index).spec.queue
                logger.warning("AMQP consumer cancelled by broker (queue deleted?); it will not be restarted",
                               metadata: ["consumer": "\(tag)", "queue": "\(queue)"])
            }
        case PAYFLEET_CHANNEL_CLOSE:
            let close = payload(amqp_channel_close_t.self)
            throw channelClosedByBroker(code: Int(close.reply_code), text: String(amqpBytes: close.reply_text))
        case PAYFLEET_CONNECTION_CLOSE:
            let close = payload(amqp_connection_close_t.self)
            throw connectionClosedByBroker(code: Int(close.reply_code), text: String(amqpBytes: close.reply_text))
        case PAYFLEET_CONNECTION_BLOCKED:
            logger.warning("AMQP broker blocked this connection (resource alarm); publishes will stall")
        case PAYFLEET_CONNECTION_UNBLOCKED:
            logger.info("AMQP broker unblocked this connection")
        case PAYFLEET_CHANNEL_FLOW:
            var ok = amqp_channel_flow_ok_t(active: payload(amqp_channel_flow_t.self).active)
            let status = amqp_send_method(connection, channel, PAYFLEET_CHANNEL_FLOW_OK, &ok)
            if status != AMQP_STATUS_OK.rawValue { throw LoopFailure.connection("channel.flow-ok failed") }
        default:
            logger.debug("ignoring AMQP method", metadata: ["method": "\(method.id)"])
        }
    }

    /// Acknowledges a broker channel.close. Publishes in flight on the closed channel
    /// have an unknown fate; deliveries of it are requeued by the broker.
    private func channelClosedByBroker(code: Int, text: String) -> LoopFailure {
        if let connection {
            var ok = amqp_channel_close_ok_t(dummy: 0)
            _ = amqp_send_method(connection, Self.channel, PAYFLEET_CHANNEL_CLOSE_OK, &ok)
        }
        failUnconfirmed("channel closed by broker: \(code) \(text)")
        if case .get(_, _, _, _, let continuation)? = content?.owner {
            continuation.resume(throwing: AMQPError.channelClosed(code: code, text: text))
        }
        content = nil
        return .channel(code: code, text: text)
    }

    private func connectionClosedByBroker(code: Int, text: String) -> LoopFailure {
        if let connection {
            var ok = amqp_connection_close_ok_t(dummy: 0)
            _ = amqp_send_method(connection, 0, PAYFLEET_CONNECTION_CLOSE_OK, &ok)
        }
        return .connection("broker closed the connection: \(code) \(text)")
    }

    // MARK: - Synchronous methods

    /// Runs one rabbitmq-c RPC call, then the frames it queued, and turns a failure into
    /// a `LoopFailure` (acknowledging a channel.close on the way).
    private func rpc<T>(_ what: String, _ call: (amqp_connection_state_t) -> T) throws -> T {
        guard let connection else { throw LoopFailure.connection("not connected") }
        let result = call(connection)
        let reply = amqp_get_rpc_reply(connection)
        lastInbound = .now
        try check(reply, doing: what)
        return result
    }

    private func check(_ reply: amqp_rpc_reply_t, doing what: String) throws {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            try drainQueuedFrames()
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            try drainQueuedFrames()
            switch reply.reply.id {
            case PAYFLEET_CHANNEL_CLOSE:
                let close = reply.reply.decoded!.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                throw channelClosedByBroker(code: Int(close.reply_code), text: String(amqpBytes: close.reply_text))
            case PAYFLEET_CONNECTION_CLOSE:
                let close = reply.reply.decoded!.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                throw connectionClosedByBroker(code: Int(close.reply_code), text: String(amqpBytes: close.reply_text))
            default:
                throw LoopFailure.connection("\(what): unexpected reply method \(reply.reply.id)")
            }
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            let code = reply.library_error > 0 ? -reply.library_error : reply.library_error
            throw LoopFailure.connection("\(what): \(statusText(code))")
        default:
            throw LoopFailure.connection("\(what): connection closed")
        }
    }

    private func perform(_ request: RPCRequest, _ continuation: CheckedContinuation<RPCResult, any Error>) {
        do {
            switch request {
            case .declare(let topology):
                try declare(topology)
                continuation.resume(returning: .done)
            case .declareQueue(let queue):
                let result = try declareQueue(queue, passive: false)
                continuation.resume(returning: .queue(name: result.name, messageCount: result.messageCount,
                                                      consumerCount: result.consumerCount))
            case .declareQueuePassive(let name):
                let result = try declareQueue(AMQPQueueDeclaration(name: name), passive: true)
                continuation.resume(returning: .queue(name: result.name, messageCount: result.messageCount,
                                                      consumerCount: result.consumerCount))
            case .bind(let binding):
                try bind(binding)
                continuation.resume(returning: .done)
            case .unbind(let binding):
                let arena = CArena()
                _ = try rpc("queue.unbind \(binding.destination)") {
                    amqp_queue_unbind($0, Self.channel, arena.bytes(binding.destination), arena.bytes(binding.source),
                                      arena.bytes(binding.routingKey), arena.table(binding.arguments))
                }
                continuation.resume(returning: .done)
            case .deleteQueue(let name):
                // The broker cancels our consumers of the queue; expect that, don't warn about it.
                consumers.removeAll { $0.spec.queue == name }
                let arena = CArena()
                _ = try rpc("queue.delete \(name)") { amqp_queue_delete($0, Self.channel, arena.bytes(name), 0, 0) }
                continuation.resume(returning: .done)
            case .deleteExchange(let name):
                let arena = CArena()
                _ = try rpc("exchange.delete \(name)") { amqp_exchange_delete($0, Self.channel, arena.bytes(name), 0) }
                continuation.resume(returning: .done)
            case .consume(let spec):
                let consumer = Consumer(tag: newConsumerTag(), spec: spec)
                try consume(consumer)
                consumers.append(consumer)
                continuation.resume(returning: .consumerTag(consumer.tag))
            case .get(let queue, let noAck):
                try get(queue: queue, noAck: noAck, continuation)
            case .cancelConsumers:
                let cancelling = consumers
                consumers.removeAll()
                for consumer in cancelling {
                    let arena = CArena()
                    _ = try rpc("basic.cancel \(consumer.tag)") {
                        amqp_basic_cancel($0, Self.channel, arena.bytes(consumer.tag))
                    }
                }
                continuation.resume(returning: .done)
            }
        } catch LoopFailure.channel(let code, let text) {
            do {
                try restoreChannel()
            } catch {
                dropConnection("reopening the channel failed: \(error)")
            }
            continuation.resume(throwing: AMQPError.channelClosed(code: code, text: text))
        } catch LoopFailure.connection(let reason) {
            dropConnection(reason)
            continuation.resume(throwing: AMQPError.connectionLost(reason))
        } catch {
            dropConnection("\(error)")
            continuation.resume(throwing: AMQPError.connectionLost("\(error)"))
        }
    }

    private func declare(_ topology: AMQPTopology) throws {
        for exchange in topology.exchanges where !exchange.name.isEmpty && !exchange.name.hasPrefix("amq.") {
            try declare(exchange)
        }
        for queue in topology.queues {
            _ = try declareQueue(queue, passive: false)
        }
        for binding in topology.bindings {
            try bind(binding)
        }
    }

    private func declare(_ exchange: AMQPExchangeDeclaration) throws {
        let arena = CArena()
        _ = try rpc("exchange.declare \(exchange.name)") {
            amqp_exchange_declare($0, Self.channel, arena.bytes(exchange.name), arena.bytes(exchange.type), 0,
                                  exchange.durable ? 1 : 0, exchange.autoDelete ? 1 : 0,
                                  exchange.internal ? 1 : 0, arena.table(exchange.arguments))
        }
    }

    private func declareQueue(_ queue: AMQPQueueDeclaration, passive: Bool) throws
        -> (name: String, messageCount: UInt32, consumerCount: UInt32) {
        let arena = CArena()
        let ok = try rpc("queue.declare \(queue.name)") { connection in
            amqp_queue_declare(connection, Self.channel, arena.bytes(queue.name), passive ? 1 : 0,
                               queue.durable ? 1 : 0, queue.exclusive ? 1 : 0, queue.autoDelete ? 1 : 0,
                               arena.table(queue.arguments))
                .map { (String(amqpBytes: $0.pointee.queue), $0.pointee.message_count, $0.pointee.consumer_count) }
        }
        guard let ok else { throw LoopFailure.connection("queue.declare \(queue.name): empty reply") }
        return ok
    }

    private func bind(_ binding: AMQPBinding) throws {
        let arena = CArena()
        _ = try rpc("queue.bind \(binding.destination)") {
            amqp_queue_bind($0, Self.channel, arena.bytes(binding.destination), arena.bytes(binding.source),
                            arena.bytes(binding.routingKey), arena.table(binding.arguments))
        }
    }

    private func consume(_ consumer: Consumer) throws {
        let arena = CArena()
        _ = try rpc("basic.consume \(consumer.spec.queue)") {
            amqp_basic_consume($0, Self.channel, arena.bytes(consumer.spec.queue), arena.bytes(consumer.tag), 0,
                               consumer.spec.noAck ? 1 : 0, consumer.spec.exclusive ? 1 : 0,
                               amqp_table_t(num_entries: 0, entries: nil))
        }
    }

    /// basic.get: the reply's header and body follow on the socket; the loop collects them
    /// and resumes the caller.
    private func get(queue: String, noAck: Bool, _ continuation: CheckedContinuation<RPCResult, any Error>) throws {
        guard let connection else { throw LoopFailure.connection("not connected") }
        let arena = CArena()
        let reply = amqp_basic_get(connection, Self.channel, arena.bytes(queue), noAck ? 1 : 0)
        withExtendedLifetime(arena) {}
        // Copy the reply before handling queued frames, which may release its memory.
        let getOk: amqp_basic_get_ok_t? = reply.reply_type == AMQP_RESPONSE_NORMAL && reply.reply.id == PAYFLEET_BASIC_GET_OK
            ? reply.reply.decoded!.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee : nil
        let owner: ContentOwner? = getOk.map {
            .get(tag: $0.delivery_tag, redelivered: $0.redelivered != 0, exchange: String(amqpBytes: $0.exchange),
                 routingKey: String(amqpBytes: $0.routing_key), continuation)
        }
        try check(reply, doing: "basic.get \(queue)")
        if let owner {
            content = PendingContent(owner: owner)
        } else {
            continuation.resume(returning: .delivery(nil))
        }
    }

    // MARK: - Connecting

    private func connect() {
        let url = configuration.url
        logger.info("connecting to AMQP broker",
                    metadata: ["url": "\(url)", "attempt": "\(failedAttempts + 1)"])
        do {
            try openConnection()
            if let topology = configuration.topology {
                try declareTopologyAfterConnect(topology)
            }
            try startConsumers()
            failedAttempts = 0
            mailbox.setConnected(true, generation: generation)
            logger.info("connected to AMQP broker",
                        metadata: ["url": "\(url)", "generation": "\(generation)", "heartbeat": "\(heartbeatSeconds)"])
            sendWaitingPublishes()
        } catch {
            let reason: String
            switch error as? LoopFailure {
            case .connection(let text)?: reason = text
            case .channel(let code, let text)?: reason = "\(code) \(text)"
            case nil: reason = "\(error)"
            }
            failedAttempts += 1
            closeSocket()
            let delay = backoff(attempt: failedAttempts)
            nextAttempt = .now + delay
            logger.warning("AMQP connection attempt failed",
                           metadata: ["url": "\(url)", "attempt": "\(failedAttempts)", "reason": "\(reason)",
                                      "retryIn": "\(delay)"])
        }
    }

    private func openConnection() throws {
        guard let connection = amqp_new_connection() else { throw LoopFailure.connection("out of memory") }
        self.connection = connection
        guard let socket = amqp_tcp_socket_new(connection) else {
            throw LoopFailure.connection("cannot create a TCP socket")
        }
        let url = configuration.url
        let arena = CArena()
        var connectTimeout = timeval(tv_sec: 5, tv_usec: 0)
        let status = amqp_socket_open_noblock(socket, arena.cString(url.host), Int32(url.port), &connectTimeout)
        guard status == AMQP_STATUS_OK.rawValue else {
            throw LoopFailure.connection("cannot connect to \(url.host):\(url.port): \(statusText(status))")
        }
        var handshakeTimeout = timeval(tv_sec: 10, tv_usec: 0)
        _ = amqp_set_handshake_timeout(connection, &handshakeTimeout)
        // A reply that never comes means the connection is dead: give up and reconnect.
        var rpcTimeout = timeval(tv_sec: 30, tv_usec: 0)
        _ = amqp_set_rpc_timeout(connection, &rpcTimeout)

        var clientProperties = arena.table([
            "connection_name": .string(configuration.connectionName),
            "product": "PayFleet AMQP (rabbitmq-c)",
            "capabilities": .table([
                "publisher_confirms": true, "consumer_cancel_notify": true, "basic.nack": true,
                "connection.blocked": true, "authentication_failure_close": true,
            ]),
        ])
        let reply = payfleet_amqp_login_plain(connection, arena.cString(url.vhost), 0, 131_072,
                                              Int32(configuration.heartbeatSeconds), &clientProperties,
                                              arena.cString(url.user), arena.cString(url.password))
        withExtendedLifetime(arena) {}
        try check(reply, doing: "login as \(url.user) to vhost \(url.vhost)")
        heartbeatSeconds = Int(amqp_get_heartbeat(connection))
        lastInbound = .now
        try openChannel()
    }

    /// channel.open, basic.qos and confirm.select on channel 1, starting a new generation.
    private func openChannel() throws {
        do {
            _ = try rpc("channel.open") { amqp_channel_open($0, Self.channel) }
            if configuration.prefetch > 0 {
                _ = try rpc("basic.qos") { amqp_basic_qos($0, Self.channel, 0, configuration.prefetch, 0) }
            }
            if configuration.confirms {
                _ = try rpc("confirm.select") { amqp_confirm_select($0, Self.channel) }
            }
        } catch LoopFailure.channel(let code, let text) {
            throw LoopFailure.connection("opening the channel failed: \(code) \(text)")
        }
        generation += 1
        nextSequence = 1
        lowestUnconfirmed = 1
        expiredThrough = 1
        mailbox.setConnected(mailbox.isConnected, generation: generation)
    }

    /// The configured topology after a (re)connect. A declaration the broker refuses is
    /// logged and skipped so one bad entry cannot keep the connection down.
    private func declareTopologyAfterConnect(_ topology: AMQPTopology) throws {
        var steps: [(String, () throws -> Void)] = []
        for exchange in topology.exchanges where !exchange.name.isEmpty && !exchange.name.hasPrefix("amq.") {
            steps.append(("exchange \(exchange.name)", { try self.declare(exchange) }))
        }
        for queue in topology.queues {
            steps.append(("queue \(queue.name)", { _ = try self.declareQueue(queue, passive: false) }))
        }
        for binding in topology.bindings {
            steps.append(("binding \(binding.source) -> \(binding.destination)", { try self.bind(binding) }))
        }
        for (name, step) in steps {
            do {
                try step()
            } catch LoopFailure.channel(let code, let text) {
                logger.error("AMQP broker refused topology declaration",
                             metadata: ["what": "\(name)", "code": "\(code)", "reason": "\(text)"])
                try openChannel()
            }
        }
    }

    /// basic.consume for every wanted consumer. One the broker refuses (its queue is
    /// missing, say) is logged and left out until the next reconnect.
    private func startConsumers() throws {
        var skipped: Set<String> = []
        var index = 0
        while index < consumers.count {
            let consumer = consumers[index]
            index += 1
            if skipped.contains(consumer.tag) { continue }
            do {
                try consume(consumer)
            } catch LoopFailure.channel(let code, let text) {
                logger.error("AMQP broker refused a consumer; retrying after the next reconnect",
                             metadata: ["queue": "\(consumer.spec.queue)", "code": "\(code)", "reason": "\(text)"])
                skipped.insert(consumer.tag)
                try openChannel()
                index = 0
            }
        }
    }

    /// After a channel error: a new channel with the same qos, confirm mode and consumers.
    private func restoreChannel() throws {
        try openChannel()
        try startConsumers()
        sendWaitingPublishes()
    }

    // MARK: - Losing and closing the connection

    private func dropConnection(_ reason: String) {
        guard connection != nil else { return }
        logger.warning("AMQP connection lost", metadata: ["reason": "\(reason)"])
        failUnconfirmed(reason)
        failWaitingPublishes(with: .notConnected)
        if case .get(_, _, _, _, let continuation)? = content?.owner {
            continuation.resume(throwing: AMQPError.connectionLost(reason))
        }
        content = nil
        closeSocket()
        mailbox.setConnected(false, generation: generation)
        nextAttempt = .now + backoff(attempt: failedAttempts)
    }

    private func closeSocket() {
        if let connection { amqp_destroy_connection(connection) }
        connection = nil
        heartbeatSeconds = 0
    }

    private func backoff(attempt: Int) -> Duration {
        let initial = configuration.reconnectInitialDelay
        let maximum = configuration.reconnectMaxDelay
        var delay = initial
        for _ in 0..<min(attempt, 30) where delay < maximum { delay *= 2 }
        return min(delay, maximum) * Double.random(in: 0.5...1.0)
    }

    private func finish() {
        if let connection {
            failUnconfirmed("connection closed before the broker confirmed")
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            _ = amqp_set_rpc_timeout(connection, &timeout)
            _ = amqp_channel_close(connection, Self.channel, AMQP_REPLY_SUCCESS)
            _ = amqp_connection_close(connection, AMQP_REPLY_SUCCESS)
            closeSocket()
            logger.info("AMQP connection closed")
        }
        failWaitingPublishes(with: .closed)
        for job in mailbox.stop() {
            switch job {
            case .publish(_, let continuation): continuation.resume(throwing: AMQPError.closed)
            case .rpc(_, let continuation): continuation.resume(throwing: AMQPError.closed)
            case .close(let continuation?): closeRequests.append(continuation)
            case .close(nil), .ack, .reject: break
            }
        }
        deliveries.finish()
        for request in closeRequests { request.resume() }
        closeRequests.removeAll()
    }
}
