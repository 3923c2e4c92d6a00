import AMQP
import Contract
@testable import Fleet
import Foundation
import Logging
import PayFleetTesting
import Payments
import Postgres
import Store

/// The payload of the test command `ledger.post`: post `amount` to `account`.
struct LedgerPost: Codable, Sendable, Equatable {
    var account: String
    var amount: Int64
}

/// A handler whose effect is a row in `fleet_test_effects`, so tests can count effects.
/// Its behaviour per attempt is scripted by the account name:
/// `retry-once` asks for a retry on the first attempt; `always-retry` always does;
/// `throw-after-write` writes its effect and then fails (the transaction must roll back);
/// `rerun-once` asks to be run again after a preparation (recorded in `fleet_test_prepared`) until
/// one happened; `always-rerun` always does; `outage-once` loses its database connection (it
/// terminates its own backend) the first time, as a PostgreSQL restart would.
struct LedgerHandler: CommandHandler {
    let commandType = "ledger.post"
    let pool: PostgresPool

    func parse(_ data: JSONValue) -> Result<LedgerPost, ValidationFailure> {
        guard case .object(let object) = data, case .string(let account)? = object["account"] else {
            return .failure(ValidationFailure([FieldError("account", "is required")]))
        }
        guard case .integer(let amount)? = object["amount"], amount > 0 else {
            return .failure(ValidationFailure([FieldError("amount", "must be a positive integer")]))
        }
        return .success(LedgerPost(account: account, amount: amount))
    }

    func handle(_ command: Command<LedgerPost>, in tx: PostgresConnection) async throws -> Outcome {
        let account = command.payload.account
        if account.hasPrefix("retry-once"), command.attempt == 0 { return .retryLater("scripted retry") }
        if account.hasPrefix("always-retry") { return .retryLater("scripted failure") }
        if account.hasPrefix("rerun-once") || account.hasPrefix("always-rerun") {
            let prepared = try await tx.query("SELECT count(*) AS n FROM fleet_test_prepared WHERE command_id = $1", [command.id])
                .rows[0].int("n")
            if prepared == 0 || account.hasPrefix("always-rerun") {
                let pool = self.pool
                return .rerun("scripted rerun") {
                    _ = try await pool.query("INSERT INTO fleet_test_prepared (command_id, attempt) VALUES ($1, $2)",
                                             [command.id, command.attempt])
                }
            }
        }
        if account.hasPrefix("outage-once") {
            let outages = try await pool.query("SELECT count(*) AS n FROM fleet_test_outages WHERE command_id = $1", [command.id])
                .rows[0].int("n")
            if outages == 0 {
                _ = try await pool.query("INSERT INTO fleet_test_outages (command_id) VALUES ($1)", [command.id])
                _ = try await tx.query("SELECT pg_terminate_backend(pg_backend_pid())", [])
            }
        }
        // Written at once (not as an effect) so that a failure after it must roll it back.
        _ = try await tx.query("INSERT INTO fleet_test_effects (command_id, account, amount, attempt) VALUES ($1, $2, $3, $4)",
                               [command.id, account, command.payload.amount, command.attempt])
        if account.hasPrefix("throw-after-write") { throw HarnessError.scripted }
        if account.hasPrefix("park-now") { return .park("scripted park") }
        struct Posted: Codable, Sendable { let account: String; let amount: Int64; let attempt: Int }
        return .done([Event(type: "ledger.posted", merchantId: command.merchantId, resourceKey: "account:\(account)",
                            data: Posted(account: account, amount: command.payload.amount, attempt: command.attempt))])
    }

    /// Records the call in `fleet_test_parked`, as a handler would give back a reservation.
    func parked(_ command: Command<LedgerPost>, reason: String) async throws {
        _ = try await pool.query("INSERT INTO fleet_test_parked (command_id, reason) VALUES ($1, $2)", [command.id, reason])
    }

    enum HarnessError: Error { case scripted }
}

/// A system command (`ledger.sweep`): `merchantid` optional; its outcome names the merchant it
/// was confined to, if any.
struct SweepHandler: CommandHandler {
    let commandType = "ledger.sweep"
    let scope = CommandScope.system

    struct Sweep: Codable, Sendable { var note: String }

    func parse(_ data: JSONValue) -> Result<Sweep, ValidationFailure> {
        guard case .object(let object) = data, case .string(let note)? = object["note"] else {
            return .failure(ValidationFailure([FieldError("note", "is required")]))
        }
        return .success(Sweep(note: note))
    }

    func handle(_ command: Command<Sweep>, in tx: PostgresConnection) async throws -> Outcome {
        struct Swept: Codable, Sendable { let note: String; let merchant: String? }
        return .done([Event(type: "ledger.swept", merchantId: command.merchant, resourceKey: "sweep:\(command.id)",
                            data: Swept(note: command.payload.note, merchant: command.merchant))],
                     followUps: [FollowUp(type: "ledger.post", merchantId: command.merchant ?? "mch_sweep",
                                          key: "post-\(command.payload.note)",
                                          data: LedgerPost(account: "swept-\(command.payload.note)", amount: 1))])
    }
}

/// An in-process worker on a private queue, with its own connections, for runtime tests.
final class RuntimeHarness: Sendable {
    let queue: String
    let pool: PostgresPool
    let consumer: AMQPConnection
    let publisher: AMQPConnection
    let relay: OutboxRelay
    let worker: CommandWorker
    let task: Task<Void, Never>
    let relayTask: Task<Void, Never>

    init(maxRetries: Int = 3, clock: WallClock = .system) async throws {
        queue = TestEnvironment.unique("test.fleet")
        pool = try TestEnvironment.postgres(size: 6)
        try await Migrations.apply(to: pool, logger: TestEnvironment.logger)
        // Suites using the harness run in parallel: CREATE TABLE IF NOT EXISTS is not safe against
        // itself (two can both find the table missing), so they take turns on an advisory lock.
        try await pool.transaction { tx in
            _ = try await tx.query("SELECT pg_advisory_xact_lock(7270002)", [])
            try await tx.execute(simple: """
                CREATE TABLE IF NOT EXISTS fleet_test_effects (command_id text, account text, amount bigint, attempt int);
                CREATE TABLE IF NOT EXISTS fleet_test_prepared (command_id text, attempt int);
                CREATE TABLE IF NOT EXISTS fleet_test_parked (command_id text, reason text);
                CREATE TABLE IF NOT EXISTS fleet_test_outages (command_id text)
                """)
        }
        let topology = try TopologyFile.load(explicitPath: TestEnvironment.topologyPath)
        publisher = try await TestEnvironment.amqp("harness publisher")
        try await publisher.declare(topology)
        _ = try await publisher.declareQueue(AMQPQueueDeclaration(name: queue, durable: true, exclusive: false, autoDelete: false,
                                                                  arguments: ["x-queue-type": .string("quorum")]))
        consumer = try await TestEnvironment.amqp("harness consumer", confirms: false, prefetch: 16, consumes: [ConsumeSpec(queue: queue)])
        relay = OutboxRelay(pool: pool, publisher: publisher, clock: clock, logger: TestEnvironment.logger)
        worker = CommandWorker(queue: queue, consumer: consumer, publisher: publisher, pool: pool, relay: relay,
                               retry: RetryPolicy(maxRetries: maxRetries), concurrency: 4, clock: clock,
                               policy: try TestEnvironment.publisherPolicy(pool), logger: TestEnvironment.logger)
            .handling(LedgerHandler(pool: pool))
            .handling(SweepHandler())
        let worker = self.worker, relay = self.relay
        task = Task { try? await worker.run() }
        relayTask = Task { try? await relay.run() }
    }

    func command(account: String, amount: Int64 = 100, merchantId: String = "mch_test", id: String = MessageIds.newCommandId(),
                 key: String? = nil) -> CloudEvent<LedgerPost> {
        CloudEvent(id: id, type: "ledger.post", source: "/test", time: nil, merchantId: merchantId, idempotencyKey: key,
                   data: LedgerPost(account: account, amount: amount))
    }

    func send<T: Codable & Sendable>(_ command: CloudEvent<T>, replyTo: String? = nil) async throws {
        try await Fixtures.publishAll([try Fixtures.message(command, exchange: "", routingKey: queue, replyTo: replyTo)], on: publisher)
    }

    func sendRaw(_ body: String, type: String = "ledger.post", messageId: String = UUID().uuidString,
                 headers: AMQPTable = [:]) async throws {
        let message = AMQPMessage(exchange: "", routingKey: queue, body: Array(body.utf8),
                                  properties: AMQPProperties(contentType: "application/cloudevents+json", persistent: true,
                                                             messageId: messageId, type: type, headers: headers), mandatory: true)
        try await Fixtures.publishAll([message], on: publisher)
    }

    func effects(account: String) async throws -> [(commandId: String, attempt: Int)] {
        try await pool.query("SELECT command_id, attempt FROM fleet_test_effects WHERE account = $1 ORDER BY attempt", [account])
            .rows.map { (try $0.string("command_id"), try $0.int("attempt")) }
    }

    func close() async {
        task.cancel()
        relayTask.cancel()
        await consumer.close()
        try? await publisher.deleteQueue(queue)
        await publisher.close()
        await pool.close()
    }
}
