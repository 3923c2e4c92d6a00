import Contract
import Foundation
import Postgres

/// What a command's transaction ended in.
enum TransactionResult: Sendable {
    /// The outbox rows written (the outcome first), with their ids, leased to this process.
    case committed([OutboxRow])
    case duplicate(Inbox.Stored)
}

/// Thrown inside a command's transaction to roll it back with a decision.
struct Rollback: Error {
    enum Decision { case retry(String), park(String), keyInUse(String), rerun(String, @Sendable () async throws -> Void) }
    let decision: Decision
}

/// One command's transaction work: claim its inbox row, run its handler, and write its effect with
/// its outbox rows. The same steps run in a transaction of their own (`alone`) or as one member of
/// a group commit (`GroupCommitter`), inside a savepoint. Builds the outbox rows of outcomes and
/// rejections too.
struct CommandTransaction: Sendable {
    /// The CloudEvents `source` of what this worker writes.
    let source: String
    let clock: WallClock

    /// A command ready for its transaction.
    struct Job: Sendable {
        let prepared: PreparedCommand
        let commandId: String
        let commandType: String
        let merchantId: String
        let key: String
        let traceparent: String?
    }

    /// The command's part of an open transaction. `opening` go in the same round trip before the
    /// inbox claim (`BEGIN` and the locks, or a savepoint); `closing` in the same round trip after
    /// the writes (`COMMIT`, or the savepoint's release). On a throw the caller rolls back.
    func run(_ job: Job, on tx: PostgresConnection, opening: [PostgresStatement], closing: [PostgresStatement]) async throws
        -> TransactionResult {
        let claim = Inbox.claim(merchantId: job.merchantId, key: job.key, commandId: job.commandId, commandType: job.commandType,
                                requestHash: job.prepared.requestHash, at: clock.now)
        guard try await tx.batch(opening + [claim])[opening.count].affectedRows == 1 else {
            guard let stored = try await Inbox.stored(merchantId: job.merchantId, key: job.key, on: tx) else {
                throw Rollback(decision: .retry("inbox row vanished"))
            }
            _ = try await tx.batch(closing)
            return .duplicate(stored)
        }
        let rows: [OutboxRow], effects: [PostgresStatement]
        switch try await job.prepared.run(tx) {
        case .done(let events, let writes, let followUps):
            guard !events.isEmpty else { throw Rollback(decision: .park("handler returned done without an outcome event")) }
            rows = try events.enumerated().map { index, event in
                // A second event of one type (a settlement per currency) is told apart by its resource.
                let repeated = events[..<index].contains { $0.type == event.type }
                return try outboxRow(event, commandId: job.commandId, distinguishing: repeated, traceparent: job.traceparent)
            }
            effects = try writes + followUps.map { try followUpStatement($0, causedBy: job.commandId, traceparent: job.traceparent) }
        case .rejected(let code, let message, let errors):
            rows = [try rejectionRow(commandId: job.commandId, type: job.commandType, merchantId: job.merchantId,
                                     code: code, message: message, errors: errors)]
            effects = []
        case .retryLater(let reason):
            throw Rollback(decision: .retry(reason))
        case .keyInUse(let message):
            throw Rollback(decision: .keyInUse(message))
        case .park(let reason):
            throw Rollback(decision: .park(reason))
        case .rerun(let reason, let prepare):
            throw Rollback(decision: .rerun(reason, prepare))
        }
        let results = try await tx.batch(effects + Inbox.recordOutcome(merchantId: job.merchantId, key: job.key, events: rows, at: clock.now)
                                          + closing)
        return .committed(try zip(rows, results[effects.count...]).map { row, result in
            var row = row
            row.id = try result.rows[0].int64("id")
            return row
        })
    }

    /// The command in a transaction of its own: `BEGIN`, the handler's locks and the claim in one
    /// round trip, the writes and `COMMIT` in another.
    func alone(_ job: Job, pool: PostgresPool) async throws -> TransactionResult {
        try await pool.withConnection { tx in
            do {
                return try await run(job, on: tx, opening: [.begin] + job.prepared.locks, closing: [.commit])
            } catch {
                // Best effort: after a lost connection there is nothing to roll back.
                _ = try? await tx.batch([.rollback])
                throw error
            }
        }
    }

    func outboxRow(_ event: Event, commandId: String, distinguishing: Bool = false, traceparent: String? = nil) throws -> OutboxRow {
        let id = MessageIds.eventId(merchantId: event.merchantId, commandId: distinguishing ? "\(commandId)|\(event.resourceKey)" : commandId,
                                    type: event.type)
        // An event carries the trace of the command that caused it (W3C Trace Context, as the
        // CloudEvents distributed-tracing extension).
        let body = try event.render(id, source, Timestamp.format(clock.now), event.merchantId, traceparent.flatMap(TraceContext.valid))
        return OutboxRow(eventId: id, eventType: event.type, exchange: Exchanges.events, routingKey: event.routingKey,
                         resourceKey: event.resourceKey, correlationId: commandId, body: body)
    }

    /// A follow-up command as an outbox row to `payfleet.commands`, with an id derived from the
    /// command that caused it, so a re-run writes the same message.
    func followUpStatement(_ followUp: FollowUp, causedBy commandId: String, traceparent: String?) throws -> PostgresStatement {
        let id = MessageIds.commandId(derivedFrom: "\(commandId)|\(followUp.merchantId ?? "")|\(followUp.key)")
        let envelope = CloudEvent(id: id, type: followUp.type, source: source, time: Timestamp.format(clock.now),
                                  merchantId: followUp.merchantId, idempotencyKey: followUp.key,
                                  traceparent: traceparent.flatMap(TraceContext.valid),
                                  data: try JSONDecoder().decode(JSONValue.self, from: Data(try followUp.data().utf8)))
        return Outbox.append(OutboxRow(eventId: id, eventType: followUp.type, exchange: Exchanges.commands, routingKey: followUp.type,
                                       resourceKey: "command:\(followUp.merchantId ?? ""):\(followUp.key)", correlationId: commandId,
                                       body: try CanonicalJSON.encode(envelope)), at: clock.now)
    }

    /// `command.rejected` as an outbox row.
    func rejectionRow(commandId: String, type: String, merchantId: String?, code: String, message: String,
                      errors: [FieldError] = []) throws -> OutboxRow {
        let rejection = CommandRejection(commandId: commandId, commandType: type, code: code, message: message, errors: errors)
        let event = Event(type: EventRouting.commandRejected, merchantId: merchantId,
                          resourceKey: "command:\(merchantId ?? ""):\(commandId)", data: rejection)
        return try outboxRow(event, commandId: commandId)
    }
}
