import Foundation
import Payments
import Postgres
import Store

/// A command as a handler sees it: parsed, validated and typed, with its delivery context.
public struct Command<Payload: Sendable>: Sendable {
    /// The envelope `id` (also the AMQP `message_id`).
    public let id: String
    public let type: String
    public let source: String
    public let merchantId: String
    /// The envelope's `idempotencykey`, or its `id` when absent; scoped per merchant.
    public let idempotencyKey: String
    public let traceparent: String?
    public let payload: Payload
    /// 0 on the first delivery, n after n retries through the delay queues.
    public let attempt: Int
    /// True when a `retryLater` outcome would be the last straw: the handler should decide now.
    public let isFinalAttempt: Bool
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
    let render: @Sendable (_ id: String, _ source: String, _ time: String, _ merchantId: String?) throws -> String

    public init<T: Codable & Sendable>(type: String, merchantId: String?, resourceKey: String, data: T) {
        self.type = type
        self.merchantId = merchantId
        self.resourceKey = resourceKey
        self.render = { id, source, time, merchantId in
            try StoreJSON.encode(CloudEvent(id: id, type: type, source: source, time: time, merchantId: merchantId, data: data))
        }
    }

    public var routingKey: String { EventRouting.routingKey(type: type, merchantId: merchantId) }
}

/// What a handler decided. The runtime alone turns it into commit, ack, retry or park.
public enum Outcome: Sendable {
    /// Commit `effects` (statements run in the command's transaction, after anything the handler
    /// wrote itself) with these events; the first event is the outcome, also sent to `reply_to`.
    case done([Event], effects: [PostgresStatement] = [])
    /// The command takes no effect: commit a `command.rejected` event with this code.
    case rejected(code: String, message: String, errors: [FieldError] = [])
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
    /// Turns the envelope's `data` into a typed payload, or every field error.
    func parse(_ data: JSONValue) -> Result<Payload, ValidationFailure>
    /// Decides the command inside the runtime's transaction (the inbox row is already claimed):
    /// reads through `transaction`, and returns its writes as `effects` of the outcome, which the
    /// runtime sends with the outbox rows and `COMMIT` in one hop.
    func handle(_ command: Command<Payload>, in transaction: PostgresConnection) async throws -> Outcome
    /// Statements the runtime runs right after `BEGIN` and the inbox claim, in the same hop: the
    /// transaction-scoped locks the handler's work needs (none by default).
    func locks(_ command: Command<Payload>) -> [PostgresStatement]
}

extension CommandHandler {
    public func locks(_ command: Command<Payload>) -> [PostgresStatement] { [] }
}

/// A handler with its payload type erased, so one worker can host several command types.
struct HandlerBinding: Sendable {
    let commandType: String
    let prepare: @Sendable (_ envelope: CloudEvent<JSONValue>, _ merchantId: String, _ key: String, _ attempt: Int, _ isFinal: Bool)
        -> Result<PreparedCommand, ValidationFailure>

    init<H: CommandHandler>(_ handler: H) {
        commandType = handler.commandType
        prepare = { envelope, merchantId, key, attempt, isFinal in
            handler.parse(envelope.data).flatMap { payload in
                let canonical: String
                do { canonical = try StoreJSON.encode(payload) } catch {
                    return .failure(ValidationFailure([FieldError("data", "cannot be encoded: \(error)")]))
                }
                let command = Command(id: envelope.id, type: envelope.type, source: envelope.source, merchantId: merchantId,
                                      idempotencyKey: key, traceparent: envelope.traceparent, payload: payload,
                                      attempt: attempt, isFinalAttempt: isFinal)
                return .success(PreparedCommand(requestHash: Identifiers.sha256Hex("\(envelope.type)|\(canonical)"),
                                                locks: handler.locks(command),
                                                run: { try await handler.handle(command, in: $0) }))
            }
        }
    }
}

struct PreparedCommand: Sendable {
    let requestHash: String
    let locks: [PostgresStatement]
    let run: @Sendable (PostgresConnection) async throws -> Outcome
}
