import Contract
import Foundation
import Postgres

/// Who a command type belongs to.
public enum CommandScope: Sendable {
    /// A merchant's command: the envelope must name the merchant (`merchantid`); its idempotency
    /// key and its events are the merchant's.
    case merchant
    /// A system command (a sweep, `settlement.run`, `archive.run`): `merchantid` is optional. Without
    /// it the command belongs to no merchant and its events go to `sys.<type>`; with it, it acts on
    /// that merchant's resources only (a test clock).
    case system
}

/// A command as a handler sees it: parsed, validated and typed, with its delivery context.
public struct Command<Payload: Sendable>: Sendable {
    /// The envelope `id` (also the AMQP `message_id`).
    public let id: String
    public let type: String
    public let source: String
    /// The envelope's `merchantid`: always set for a `.merchant` command; empty for a `.system`
    /// command that names no merchant (see `merchant`).
    public let merchantId: String
    /// The envelope's `idempotencykey`, or its `id` when absent; scoped per merchant.
    public let idempotencyKey: String
    /// A hash of the command type and its canonical payload: two commands under one key with
    /// different hashes are a reused key, not a duplicate.
    public let requestHash: String
    public let traceparent: String?
    public let payload: Payload
    /// 0 on the first delivery, n after n retries through the delay queues.
    public let attempt: Int
    /// True when a `retryLater` outcome would be the last straw: the handler should decide now.
    public let isFinalAttempt: Bool

    /// The merchant a system command is confined to, if it names one.
    public var merchant: String? { merchantId.isEmpty ? nil : merchantId }
}

/// An event a handler wants published when its transaction commits.
///
/// The runtime gives it a deterministic id (per command and type), wraps it in the CloudEvents
/// envelope, writes it to the outbox in the handler's transaction, and publishes it after commit.
public struct Event: Sendable {
    public let type: String
    public let merchantId: String?
    /// Events of one resource are published in commit order: this names the resource.
    public let resourceKey: String
    let render: @Sendable (_ id: String, _ source: String, _ time: String, _ merchantId: String?, _ traceparent: String?) throws -> String

    public init<T: Codable & Sendable>(type: String, merchantId: String?, resourceKey: String, data: T) {
        self.type = type
        self.merchantId = merchantId
        self.resourceKey = resourceKey
        self.render = { id, source, time, merchantId, traceparent in
            try CanonicalJSON.encode(CloudEvent(id: id, type: type, source: source, time: time, merchantId: merchantId,
                                                traceparent: traceparent, data: data))
        }
    }

    public var routingKey: String { EventRouting.routingKey(type: type, merchantId: merchantId) }
}

/// A command a handler wants published when its transaction commits (through the outbox, like
/// an event): how a sweep fans out into one command per resource, each its own exactly-once
/// effect. Its id is derived from the causing command and `key`, so a re-run publishes the same
/// message, and the receiving worker's inbox takes it once.
public struct FollowUp: Sendable {
    public let type: String
    public let merchantId: String?
    /// The follow-up's idempotency key (scoped per merchant, as any command's).
    public let key: String
    let data: @Sendable () throws -> String

    public init<T: Codable & Sendable>(type: String, merchantId: String?, key: String, data: T) {
        self.type = type
        self.merchantId = merchantId
        self.key = key
        self.data = { try CanonicalJSON.encode(data) }
    }
}

/// What a handler decided. The runtime alone turns it into commit, ack, retry or park.
public enum Outcome: Sendable {
    /// Commit `effects` (statements run in the command's transaction, after anything the handler
    /// wrote itself) with these events and follow-up commands; the first event is the outcome,
    /// also sent to `reply_to`.
    case done([Event], effects: [PostgresStatement] = [], followUps: [FollowUp] = [])
    /// The command takes no effect: commit a `command.rejected` event with this code.
    case rejected(code: String, message: String, errors: [FieldError] = [])
    /// The command's idempotency key is held by another command with another payload (one still
    /// retrying, whose inbox row is not committed yet): roll back, answer `command.rejected` with
    /// `idempotency_key_reused`, and ack, leaving the key to its holder (nothing is recorded under it).
    case keyInUse(String)
    /// Roll back and try again later, through the delay queues (bounded; then parked).
    case retryLater(String)
    /// Roll back and park the message for an operator, with this reason.
    case park(String)
    /// Roll back, run `prepare` outside any transaction (e.g. rebuild what Redis lost, which must
    /// wait for this transaction's locks), then run the command again at once. Bounded: past
    /// `CommandWorker.immediateReruns` it becomes `retryLater`.
    case rerun(String, after: @Sendable () async throws -> Void)
}

/// Handles one command type. Implementations write their effect on the given transaction
/// connection and return an outcome; they never ack, publish or retry themselves.
public protocol CommandHandler: Sendable {
    associatedtype Payload: Sendable & Encodable
    /// The command type this handler takes, e.g. `payment.create`.
    var commandType: String { get }
    /// Whether the command belongs to a merchant (the default) or to the system.
    var scope: CommandScope { get }
    /// Whether a merchant's own broker user may send it (for its merchant). By default merchant
    /// commands yes, system commands no; a command only the fleet sends (a channel's result, one
    /// merchant's settlement) says no.
    var merchantsMaySend: Bool { get }
    /// Turns the envelope's `data` into a typed payload, or every field error.
    func parse(_ data: JSONValue) -> Result<Payload, ValidationFailure>
    /// Decides the command inside the runtime's transaction (the inbox row is already claimed):
    /// reads through `transaction`, and returns its writes as `effects` of the outcome, which the
    /// runtime sends with the outbox rows and `COMMIT` in one hop.
    func handle(_ command: Command<Payload>, in transaction: PostgresConnection) async throws -> Outcome
    /// Statements the runtime runs right after `BEGIN` and the inbox claim, in the same hop: the
    /// transaction-scoped locks the handler's work needs (none by default).
    func locks(_ command: Command<Payload>) -> [PostgresStatement]
    /// Called after the runtime gave up on a command and parked it without effect (retries spent,
    /// or a `park` outcome): undo what earlier attempts held outside the transaction, such as a
    /// limit reservation. May run more than once for one command; must be idempotent. An error is
    /// logged, never retried.
    func parked(_ command: Command<Payload>, reason: String) async throws
}

extension CommandHandler {
    public var scope: CommandScope { .merchant }
    public var merchantsMaySend: Bool { scope == .merchant }
    public func locks(_ command: Command<Payload>) -> [PostgresStatement] { [] }
    public func parked(_ command: Command<Payload>, reason: String) async throws {}
}

/// A handler with its payload type erased, so one worker can host several command types.
struct HandlerBinding: Sendable {
    let commandType: String
    let scope: CommandScope
    let merchantsMaySend: Bool
    let prepare: @Sendable (_ envelope: CloudEvent<JSONValue>, _ merchantId: String, _ key: String, _ attempt: Int, _ isFinal: Bool)
        -> Result<PreparedCommand, ValidationFailure>

    init<H: CommandHandler>(_ handler: H) {
        commandType = handler.commandType
        scope = handler.scope
        merchantsMaySend = handler.merchantsMaySend
        prepare = { envelope, merchantId, key, attempt, isFinal in
            handler.parse(envelope.data).flatMap { payload in
                let canonical: String
                do { canonical = try CanonicalJSON.encode(payload) } catch {
                    return .failure(ValidationFailure([FieldError("data", "cannot be encoded: \(error)")]))
                }
                let requestHash = MessageIds.sha256Hex("\(envelope.type)|\(canonical)")
                let command = Command(id: envelope.id, type: envelope.type, source: envelope.source, merchantId: merchantId,
                                      idempotencyKey: key, requestHash: requestHash, traceparent: envelope.traceparent,
                                      payload: payload, attempt: attempt, isFinalAttempt: isFinal)
                return .success(PreparedCommand(requestHash: requestHash,
                                                locks: handler.locks(command),
                                                run: { try await handler.handle(command, in: $0) },
                                                parked: { try await handler.parked(command, reason: $0) }))
            }
        }
    }
}

struct PreparedCommand: Sendable {
    let requestHash: String
    let locks: [PostgresStatement]
    let run: @Sendable (PostgresConnection) async throws -> Outcome
    let parked: @Sendable (String) async throws -> Void
}
