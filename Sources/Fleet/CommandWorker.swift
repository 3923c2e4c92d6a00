import AMQP
import ConnectionThread
import Contract
import Foundation
import Logging
import Metrics
import Postgres
import ServiceLifecycle
import Tracing
import Synchronization

/// Consumes one work queue and runs each command through its handler, exactly once in effect.
///
/// For every delivery the runtime, not the handler:
/// - refuses a body over `maxMessageBytes` before decoding it;
/// - parses the CloudEvents envelope and the typed payload; a message that cannot be parsed or is
///   invalid yields `command.rejected` and is parked with its reason (never retried, never a crash);
/// - checks who sent it (`PublisherPolicy`): a command without `user_id`, or from a merchant's
///   broker user for another merchant, is rejected with `forbidden` and parked; its outcome goes to
///   `reply_to` only when the sender owns that queue;
/// - rejections, like outcomes, are written to the outbox before the delivery is acked;
/// - claims the inbox row and runs the handler in one PostgreSQL transaction, writing the outcome
///   events to the outbox in that same transaction;
/// - after commit: wakes the outbox relay, sends the outcome to `reply_to`, and only then acks;
/// - for a duplicate, re-emits the stored outcome event (same event id) and acks;
/// - `retryLater` and unexpected errors go to the delay queues with backoff, bounded by
///   `RetryPolicy`; past the bound, and for `park`, the message is parked.
/// On graceful shutdown it stops consuming, lets in-flight commands finish, and returns.
public final class CommandWorker: Service, Sendable {
    let queue: String
    let source: String
    let consumer: AMQPConnection
    let publisher: AMQPConnection
    let pool: PostgresPool
    let relay: OutboxRelay
    let handlers: [String: HandlerBinding]
    let retry: RetryPolicy
    let concurrency: Int
    /// Each command in flight runs on a thread of its own (a `BlockingExecutor`), where its
    /// PostgreSQL and Redis calls run inline; false: on Swift's pool, each call a hop.
    let commandThreads: Bool
    /// At most this many commands started a second (nil: as fast as they come).
    let rate: RateLimit?
    let clock: WallClock
    let policy: PublisherPolicy
    /// Bodies over this many bytes are rejected unread.
    let maxMessageBytes: Int
    let logger: Logger
    let metrics: QueueMetrics
    /// How a command's transaction is run and its rows built.
    let transactions: CommandTransaction
    /// Groups the transactions of commands that are ready together (`GroupCommitSettings`).
    let committer: GroupCommitter<CommandTransaction.Job, TransactionResult>

    public static let defaultMaxMessageBytes = 1 << 20

    public init(queue: String, consumer: AMQPConnection, publisher: AMQPConnection, pool: PostgresPool,
                relay: OutboxRelay, retry: RetryPolicy, concurrency: Int, maxRate: Double? = nil, clock: WallClock = .system,
                policy: PublisherPolicy, maxMessageBytes: Int = CommandWorker.defaultMaxMessageBytes,
                groupCommit: GroupCommitSettings = .off, commandThreads: Bool = false, logger: Logger) {
        self.queue = queue
        let source = "/payfleet/\(queue.split(separator: ".").last.map(String.init) ?? queue)"
        self.source = source
        self.consumer = consumer
        self.publisher = publisher
        self.pool = pool
        self.relay = relay
        self.handlers = [:]
        self.retry = retry
        self.concurrency = concurrency
        self.commandThreads = commandThreads
        self.rate = maxRate.map(RateLimit.init(perSecond:))
        self.clock = clock
        self.policy = policy
        self.maxMessageBytes = maxMessageBytes
        self.logger = logger
        self.metrics = QueueMetrics(queue: queue)
        let transactions = CommandTransaction(source: source, clock: clock)
        self.transactions = transactions
        self.committer = GroupCommitter(settings: groupCommit, pool: pool, queue: queue, logger: logger,
                                        locks: { $0.prepared.locks },
                                        member: { job, tx, opening, closing in try await transactions.run(job, on: tx, opening: opening, closing: closing) },
                                        alone: { [pool] job in try await transactions.alone(job, pool: pool) })
    }

    private init(copy: CommandWorker, handlers: [String: HandlerBinding]) {
        queue = copy.queue
        source = copy.source
        consumer = copy.consumer
        publisher = copy.publisher
        pool = copy.pool
        relay = copy.relay
        self.handlers = handlers
        retry = copy.retry
        concurrency = copy.concurrency
        commandThreads = copy.commandThreads
        rate = copy.rate
        clock = copy.clock
        policy = copy.policy
        maxMessageBytes = copy.maxMessageBytes
        logger = copy.logger
        metrics = copy.metrics
        transactions = copy.transactions
        committer = copy.committer
    }

    /// This worker, also handling `handler`'s command type.
    public func handling<H: CommandHandler>(_ handler: H) -> CommandWorker {
        handling([HandlerBinding(handler)])
    }

    func handling(_ bindings: [HandlerBinding]) -> CommandWorker {
        var handlers = self.handlers
        for binding in bindings { handlers[binding.commandType] = binding }
        return CommandWorker(copy: self, handlers: handlers)
    }

    public func run() async throws {
        // Deliveries are forwarded into a stream this service owns, so that a graceful shutdown can
        // end the loop while acks and publishes of in-flight work still go through.
        let (work, input) = AsyncStream<AMQPDelivery>.makeStream()
        let forwarder = Task {
            for await delivery in consumer.deliveries { input.yield(delivery) }
            input.finish()
        }
        defer { forwarder.cancel() }

        logger.info("consuming", metadata: ["queue": "\(queue)", "concurrency": "\(concurrency)",
                                            "types": "\(handlers.keys.sorted().joined(separator: ","))"])
        // One thread per command in flight: a command holds its thread from start to end, so
        // blocking there holds up no other command.
        let threads = commandThreads ? (0..<concurrency).map { BlockingExecutor(name: "command-\($0)") } : []
        defer { for thread in threads { thread.shutdown() } }
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Int.self) { group in
                var free = Array((0..<concurrency).reversed())
                for await delivery in work {
                    if free.isEmpty, let done = await group.next() { free.append(done) }
                    let slot = free.removeLast()
                    await rate?.acquire()
                    group.addTask(executorPreference: threads.isEmpty ? nil : threads[slot]) {
                        await self.process(delivery)
                        return slot
                    }
                }
                await group.waitForAll()
            }
        } onGracefulShutdown: {
            self.logger.info("shutting down: no new deliveries; finishing in-flight commands", metadata: ["queue": "\(self.queue)"])
            Task { await self.consumer.cancelConsumers() }
            input.finish()
        }
        logger.info("stopped consuming", metadata: ["queue": "\(queue)"])
    }

    // MARK: - One delivery

    func process(_ delivery: AMQPDelivery) async {
        metrics.consumed.increment()
        metrics.inFlight.increment()
        let started = ContinuousClock.now
        defer {
            metrics.inFlight.decrement()
            metrics.handling.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
        }
        let messageId = String((delivery.properties.messageId ?? "unknown").prefix(255))
        let messageType = String((delivery.properties.type ?? "unknown").prefix(64))
        // Every log line of this delivery names the command and its trace (`LogContext`); values
        // from outside are capped here and escaped by the log handler.
        var context: Logger.Metadata = ["queue": .string(queue), "command_id": .string(messageId)]
        if case .string(let header)? = delivery.properties.headers["traceparent"], let trace = TraceContext.traceId(header) {
            context["trace_id"] = .string(trace)
        }
        await LogContext.$metadata.withValue(context) {
            await self.handle(delivery, messageId: messageId, messageType: messageType)
        }
    }

    private func handle(_ delivery: AMQPDelivery, messageId: String, messageType: String) async {
        let attempt = attempt(of: delivery)
        let sender = policy.sender(of: delivery.properties)

        // 0. The size, before anything reads the body (the broker's own limit may be higher).
        guard delivery.body.count <= maxMessageBytes else {
            await reject(delivery, commandId: messageId, type: messageType, merchantId: await senderMerchant(sender),
                         code: "invalid_request", message: "the message is \(delivery.body.count) bytes; at most \(maxMessageBytes) are accepted",
                         errors: [FieldError("$", "is over \(maxMessageBytes) bytes")], park: true)
            return
        }

        // 1. The envelope.
        guard !JSONDepth.exceeds(delivery.body) else {
            await reject(delivery, commandId: messageId, type: messageType, merchantId: await senderMerchant(sender),
                         code: "invalid_request", message: "the message nests deeper than \(JSONDepth.limit) levels",
                         errors: [FieldError("$", "nests deeper than \(JSONDepth.limit) levels")], park: true)
            return
        }
        let envelope: CloudEvent<JSONValue>
        do {
            envelope = try JSONDecoder().decode(CloudEvent<JSONValue>.self, from: Data(delivery.body))
        } catch {
            await reject(delivery, commandId: messageId, type: messageType, merchantId: await senderMerchant(sender),
                         code: "invalid_request", message: "the message is not a CloudEvents JSON envelope",
                         errors: [FieldError("$", Self.describe(error))], park: true)
            return
        }
        let commandId = String(envelope.id.prefix(255))
        let commandType = String(envelope.type.prefix(64))
        var context = LogContext.metadata
        context["command_id"] = .string(commandId)
        if let merchant = envelope.merchantid { context["merchant_id"] = .string(String(merchant.prefix(64))) }
        if let trace = TraceContext.traceId(envelope.traceparent) { context["trace_id"] = .string(trace) }
        // A span per command, through swift-distributed-tracing: a no-op until a deployment
        // bootstraps a tracer (InstrumentationSystem); OpenTelemetry export is off by default.
        await LogContext.$metadata.withValue(context) {
            await withSpan(commandType, ofKind: .consumer) { span in
                span.attributes["messaging.system"] = "rabbitmq"
                span.attributes["messaging.destination.name"] = self.queue
                span.attributes["messaging.message.id"] = commandId
                if let trace = TraceContext.traceId(envelope.traceparent) { span.attributes["payfleet.trace_id"] = trace }
                await self.handle(delivery, envelope: envelope, commandId: commandId, commandType: commandType, attempt: attempt, sender: sender)
            }
        }
    }

    private func handle(_ delivery: AMQPDelivery, envelope: CloudEvent<JSONValue>, commandId: String, commandType: String,
                        attempt: Int, sender: String?) async {
        var envelopeErrors: [FieldError] = []
        if envelope.specversion != "1.0" { envelopeErrors.append(FieldError("specversion", "must be \"1.0\"")) }
        if envelope.id.isEmpty || envelope.id.count > 255 || !TextRules.isPrintable(envelope.id) {
            envelopeErrors.append(FieldError("id", "must be 1-255 printable characters"))
        }
        let merchantId = envelope.merchantid ?? ""
        let merchantIsValid = merchantId.count <= 64 && !merchantId.contains(".") && TextRules.isPrintable(merchantId)
        let binding = handlers[envelope.type]
        if !merchantIsValid || (merchantId.isEmpty && binding?.scope != .system) {
            envelopeErrors.append(FieldError("merchantid", "is required: a merchant id without dots"))
        }
        let key = envelope.idempotencykey ?? envelope.id
        if key.isEmpty || key.count > 255 || !TextRules.isPrintable(key) {
            envelopeErrors.append(FieldError("idempotencykey", "must be 1-255 printable characters"))
        }
        // Until the sender is known to act for the envelope's merchant, a rejection goes to the
        // sender's own stream: a publisher cannot fill another merchant's stream with rejections.
        // Looked up only for a rejection: a valid command's sender is looked up once, below.
        let claimed = merchantIsValid && !merchantId.isEmpty ? merchantId : nil
        guard let binding else {
            await reject(delivery, commandId: commandId, type: commandType, merchantId: await senderMerchant(sender, claimed: claimed),
                         code: "unsupported_command", message: "\(queue) does not handle \(TextRules.forLog(envelope.type, limit: 64))",
                         errors: [], park: true)
            return
        }
        guard envelopeErrors.isEmpty else {
            await reject(delivery, commandId: commandId, type: commandType, merchantId: await senderMerchant(sender, claimed: claimed),
                         code: "invalid_request", message: "invalid envelope", errors: envelopeErrors, park: true)
            return
        }

        // 2. Who sent it, and may they.
        do {
            if case .forbidden(let reason, let notify) = try await policy.authorize(sender: sender, merchantId: merchantId,
                                                                                 merchantsMay: binding.merchantsMaySend) {
                await reject(delivery, commandId: commandId, type: commandType, merchantId: notify, code: "forbidden",
                             message: reason, errors: [], park: true)
                return
            }
        } catch {
            await retryOrPark(delivery, attempt: attempt, reason: "looking up the sender failed: \(error)", cause: error)
            return
        }

        // 3. The payload.
        let prepared: PreparedCommand
        switch binding.prepare(envelope, merchantId, key, attempt, retry.isFinal(attempt: attempt)) {
        case .failure(let failure):
            // Field paths in command.rejected start at the envelope (`data.amount`).
            let errors = failure.errors.map { FieldError($0.field == "$" ? "data" : "data.\($0.field)", $0.message) }
            await reject(delivery, commandId: envelope.id, type: envelope.type, merchantId: merchantId, code: "invalid_request",
                         message: failure.summary, errors: errors, park: true)
            return
        case .success(let command):
            prepared = command
        }

        // 4. Inbox + effect + outbox, one transaction, in three hops to the connection's thread.
        var result: TransactionResult?
        var reruns = 0
        while result == nil {
            do {
                result = try await committer.run(CommandTransaction.Job(prepared: prepared, commandId: envelope.id, commandType: envelope.type,
                                                                         merchantId: merchantId, key: key, traceparent: envelope.traceparent))
            } catch let rollback as Rollback {
                switch rollback.decision {
                case .retry(let reason): await retryOrPark(delivery, attempt: attempt, reason: reason, prepared: prepared)
                case .park(let reason): await park(delivery, reason: reason, prepared: prepared)
                case .keyInUse(let message):
                    await reject(delivery, commandId: envelope.id, type: envelope.type, merchantId: merchantId,
                                 code: "idempotency_key_reused", message: message, errors: [], park: false)
                case .rerun(let reason, let prepare):
                    reruns += 1
                    guard reruns <= Self.immediateReruns else {
                        await retryOrPark(delivery, attempt: attempt, reason: "\(reason) (still, after \(reruns - 1) reruns)",
                                          prepared: prepared)
                        return
                    }
                    do {
                        logger.info("preparing, then running the command again", metadata: [
                            "queue": "\(queue)", "command_id": "\(envelope.id)", "reason": "\(reason)"])
                        try await prepare()
                        continue
                    } catch {
                        await retryOrPark(delivery, attempt: attempt, reason: "\(reason); preparing failed: \(error)", cause: error,
                                          prepared: prepared)
                    }
                }
                return
            } catch {
                logger.warning("command failed; will retry", metadata: ["queue": "\(queue)", "command_id": "\(envelope.id)",
                                                                        "attempt": "\(attempt)", "error": "\(error)"])
                await retryOrPark(delivery, attempt: attempt, reason: "error: \(error)", cause: error, prepared: prepared)
                return
            }
        }
        guard let result else { return }

        // 5. After commit: relay, reply, ack.
        switch result {
        case .committed(let rows):
            // The worst moment to die: committed, nothing published, nothing acked.
            Faults.point("after-commit")
            // This process publishes what it committed, without claiming it from the table.
            relay.publishCommitted(rows)
            let outcome = rows[0]
            if outcome.eventType == EventRouting.commandRejected { metrics.rejected.increment() } else { metrics.succeeded.increment() }
            await reply(to: delivery, with: outcome)
            consumer.ack(delivery)
        case .duplicate(let stored):
            metrics.duplicates.increment()
            await reemit(stored, for: delivery, envelope: envelope, merchantId: merchantId, requestHash: prepared.requestHash)
        }
    }

    /// The retry count a delivery carries. The header is only a hint (any publisher can set it):
    /// clamped to the policy's range, so a forged negative count cannot buy endless retries, nor a
    /// huge one skip them.
    private func attempt(of delivery: AMQPDelivery) -> Int {
        retry.attempt(fromHeader: delivery.properties.headers[FleetHeaders.retryCount].flatMap(\.intValue))
    }

    /// The merchant whose stream a rejection goes to before the sender is authorized: a merchant
    /// user's own merchant; for an internal user the merchant the envelope names (`claimed`); else
    /// none (`sys`). A failed lookup counts as none.
    private func senderMerchant(_ sender: String?, claimed: String? = nil) async -> String? {
        guard let sender, let grant = try? await policy.grant(for: sender) else { return nil }
        switch grant {
        case .merchant(let own): return own
        case .everyMerchant: return claimed
        }
    }

    /// How many times a `rerun` outcome runs the command again at once before it becomes `retryLater`.
    static let immediateReruns = 3

    /// A duplicate: the same payload re-emits the stored outcome (same event id); another payload
    /// under the same key is `idempotency_key_reused`.
    private func reemit(_ stored: Inbox.Stored, for delivery: AMQPDelivery, envelope: CloudEvent<JSONValue>,
                        merchantId: String, requestHash: String) async {
        let row: OutboxRow
        if stored.requestHash != requestHash {
            guard let rejection = try? transactions.rejectionRow(commandId: envelope.id, type: envelope.type, merchantId: merchantId,
                                                    code: "idempotency_key_reused",
                                                    message: "this idempotency key was used with another payload by command \(stored.commandId)")
            else { return await park(delivery, reason: "cannot encode a rejection") }
            row = rejection
        } else if let body = stored.outcomeEvent, let routingKey = stored.outcomeRoutingKey, let type = stored.outcomeType,
                  let eventId = Self.eventId(in: body) {
            row = OutboxRow(eventId: eventId, eventType: type, exchange: Exchanges.events, routingKey: routingKey,
                            resourceKey: "", correlationId: stored.commandId, body: body)
        } else {
            return await park(delivery, reason: "duplicate of a command whose stored outcome is unreadable")
        }
        do {
            try await publishPatiently(EventMessage.make(row, at: clock.now))
            await reply(to: delivery, with: row)
            consumer.ack(delivery)
        } catch {
            logger.warning("could not re-emit a duplicate's outcome; requeueing", metadata: ["error": "\(error)"])
            consumer.reject(delivery, requeue: true)
        }
    }

    /// How long the runtime keeps trying a publish of its own (a retry, a parking, a duplicate's
    /// outcome) while the broker is away, before it hands the delivery back.
    static let publishPatience: Duration = .seconds(30)

    /// Publishes with a confirm; while the publisher is away (reconnecting after a broker restart)
    /// or the confirm does not come, tries again with backoff for up to `publishPatience`. Without
    /// this, a delivery requeued at once comes straight back while the broker restarts, and its
    /// delivery limit runs out: the broker would park it without a reason or an outcome.
    private func publishPatiently(_ message: AMQPMessage) async throws {
        let deadline = ContinuousClock.now + Self.publishPatience
        var pause: Duration = .milliseconds(250)
        while true {
            do {
                let outcome = try await publisher.publish(message)
                guard outcome == .acked else { throw RelayError.notConfirmed(message.properties.messageId ?? "?", "\(outcome)") }
                return
            } catch {
                guard ContinuousClock.now + pause < deadline else { throw error }
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(4))
            }
        }
    }

    private static func eventId(in body: String) -> String? {
        struct IdOnly: Decodable { let id: String }
        return try? JSONDecoder().decode(IdOnly.self, from: Data(body.utf8)).id
    }

    // MARK: - Events, replies, rejections

    /// Sends the outcome event to the command's `reply_to`, if any and if the sender owns it (best
    /// effort: the outcome is committed and also published to `payfleet.events`).
    private func reply(to delivery: AMQPDelivery, with outcome: OutboxRow) async {
        guard let requested = delivery.properties.replyTo, !requested.isEmpty else { return }
        guard let replyTo = policy.replyTarget(requested, sender: policy.sender(of: delivery.properties)) else {
            logger.notice("reply_to refused: not direct reply-to nor a queue of the sender", metadata: [
                "queue": "\(queue)", "command_id": "\(TextRules.forLog(outcome.correlationId ?? "-", limit: 64))",
                "reply_to": "\(TextRules.forLog(requested, limit: 128))"])
            return
        }
        let commandId = delivery.properties.messageId ?? outcome.correlationId
        let message = EventMessage.make(exchange: "", routingKey: replyTo, eventId: outcome.eventId, type: outcome.eventType,
                                        correlationId: commandId, body: outcome.body, at: clock.now)
        do { _ = try await publisher.publish(message) } catch {
            logger.debug("reply not delivered", metadata: ["reply_to": "\(TextRules.forLog(replyTo, limit: 128))", "error": "\(error)"])
        }
    }

    /// A command that can never take effect as sent: write `command.rejected` to the outbox (and
    /// reply), park it with the reason, and ack. Not recorded in the inbox: a redelivery is
    /// rejected the same way, with the same event id. If the rejection cannot be written, the
    /// delivery is retried later like any command whose database was away.
    private func reject(_ delivery: AMQPDelivery, commandId: String, type: String, merchantId: String?, code: String,
                        message: String, errors: [FieldError], park shouldPark: Bool) async {
        metrics.rejected.increment()
        logger.notice("command rejected", metadata: ["queue": "\(queue)", "command_id": "\(TextRules.forLog(commandId, limit: 64))",
                                                     "code": "\(code)", "reason": "\(TextRules.forLog(message))"])
        let row: OutboxRow
        do {
            row = try transactions.rejectionRow(commandId: commandId, type: type, merchantId: merchantId, code: code, message: message, errors: errors)
            let statement = Outbox.append(row, at: clock.now, ignoringDuplicate: true)
            _ = try await pool.withConnection { try await $0.batch([statement]) }
        } catch {
            logger.warning("could not record a rejection; will retry", metadata: ["queue": "\(queue)", "error": "\(error)"])
            return await retryOrPark(delivery, attempt: attempt(of: delivery), reason: "recording the rejection failed: \(error)",
                                     cause: error)
        }
        relay.notify()
        await reply(to: delivery, with: row)
        if shouldPark { await park(delivery, reason: "\(code): \(message)") } else { consumer.ack(delivery) }
    }

    // MARK: - Retry and parking

    /// Schedules the next attempt through the delay queues, or parks the command once its retries
    /// are spent. A store outage (`cause` matches `StoreOutage`) does not spend one: the command
    /// keeps its attempt number and waits in growing steps (its own `x-retry-outage` count) until
    /// the store is back, so an outage on the last attempt cannot park a good command without an
    /// outcome.
    private func retryOrPark(_ delivery: AMQPDelivery, attempt: Int, reason: String, cause: (any Error)? = nil,
                             prepared: PreparedCommand? = nil) async {
        let outage = cause.map(StoreOutage.matches) ?? false
        guard outage || !retry.isFinal(attempt: attempt) else {
            return await park(delivery, reason: "gave up after \(attempt) retries: \(reason)", prepared: prepared)
        }
        var properties = policy.republishing(delivery.properties)
        properties.persistent = true
        if outage {
            let outages = retry.outages(fromHeader: delivery.properties.headers[FleetHeaders.retryOutage].flatMap(\.intValue))
            properties.headers[FleetHeaders.retryCount] = .int(Int64(attempt))
            properties.headers[FleetHeaders.retryOutage] = .int(Int64(outages + 1))
            properties.headers[FleetHeaders.retryDelay] = .string(retry.delayLevel(afterAttempt: outages))
            metrics.outageRetries.increment()
        } else {
            properties.headers[FleetHeaders.retryCount] = .int(Int64(attempt + 1))
            properties.headers[FleetHeaders.retryDelay] = .string(retry.delayLevel(afterAttempt: attempt))
        }
        properties.headers[FleetHeaders.retryReason] = .string(String(reason.prefix(500)))
        let message = AMQPMessage(exchange: Exchanges.retry, routingKey: queue, body: delivery.body, properties: properties, mandatory: true)
        do {
            try await publishPatiently(message)
            metrics.retried.increment()
            consumer.ack(delivery)
        } catch {
            logger.warning("could not schedule a retry; requeueing", metadata: ["error": "\(error)"])
            consumer.reject(delivery, requeue: true)
        }
    }

    /// Moves the message to the parking queue with its reason in a header, then acks it. If even
    /// that publish fails, the broker's dead-letter route parks it (reject without requeue). A
    /// command that was handled (`prepared`) first gets its handler's `parked` call, so that what
    /// earlier attempts held outside the transaction is given back.
    func park(_ delivery: AMQPDelivery, reason: String, prepared: PreparedCommand? = nil) async {
        metrics.parked.increment()
        logger.warning("parking message", metadata: ["queue": "\(queue)",
                                                     "message_id": "\(TextRules.forLog(delivery.properties.messageId ?? "-", limit: 64))",
                                                     "reason": "\(TextRules.forLog(reason))"])
        if let prepared {
            do { try await prepared.parked(reason) } catch {
                logger.error("the handler could not undo a parked command's holds", metadata: [
                    "queue": "\(queue)", "message_id": "\(TextRules.forLog(delivery.properties.messageId ?? "-", limit: 64))",
                    "error": "\(error)"])
            }
        }
        let properties = ParkedMessage.parking(policy.republishing(delivery.properties), reason: reason, queue: queue, at: clock.now, by: source)
        let message = AMQPMessage(exchange: Exchanges.parking, routingKey: queue, body: delivery.body, properties: properties, mandatory: true)
        do {
            try await publishPatiently(message)
            consumer.ack(delivery)
        } catch {
            logger.error("could not park with a reason; the broker's dead-letter route parks it", metadata: ["error": "\(error)"])
            consumer.reject(delivery, requeue: false)
        }
    }

    /// A decoding error as one line a client can act on.
    public static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context): "malformed JSON: \(context.debugDescription)"
        case DecodingError.keyNotFound(let key, _): "missing field \(key.stringValue)"
        case DecodingError.typeMismatch(_, let context):
            "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
        case DecodingError.valueNotFound(_, let context): "null at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        default: "\(error)"
        }
    }
}

extension AMQPValue {
    var intValue: Int64? {
        switch self {
        case .int(let value): value
        case .string(let text): Int64(text)
        default: nil
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
