import AMQP
import Contract
import Foundation
import Logging
import Metrics
import Postgres
import ServiceLifecycle
import Synchronization

/// Publishes committed events from the outbox to RabbitMQ, with publisher confirms, and records
/// each merchant event it published in that merchant's event log (`notifications`).
///
/// Two ways in:
/// - a command's transaction leases its outbox rows to its own process as it writes them, and
///   hands them over after commit (`publishCommitted`): the relay publishes them from memory, with
///   no claim (an `UPDATE` per pass that PostgreSQL paid for as much as for the commands);
/// - everything else (rejections, events written outside a command, rows of a process that died)
///   is claimed from the table: on a wake-up, on every idle poll, and at least once a second
///   while the relay is busy with its own rows.
///
/// Promises:
/// - at least once: a row is deleted only after the broker confirmed it; a relay that died
///   leaves its rows, and any relay (in any process) resumes them once their lease ends;
/// - per-resource commit order: a pass takes only the oldest pending row of each resource
///   (`resource_key`), so a later event never overtakes an earlier one, even with many relays
///   running at once: a pass leases the rows it claims (`lease_until`, 15 s, longer than a confirm may take), so others keep off
///   them, and holds no transaction open while it waits for the broker's confirms.
public final class OutboxRelay: Service, Sendable {
    let pass: RelayPass
    let logger: Logger
    private let loop: PeriodicTask

    /// - Parameters:
    ///   - idlePoll: how often an idle relay looks for rows that another process committed (a
    ///     process relays its own commits at once; polling only picks up what a process that died
    ///     left unclaimed). Every process polls, and each poll reads the outbox: at 100 ms, eight
    ///     idle processes cost PostgreSQL more than the commands being relayed.
    public init(pool: PostgresPool, publisher: AMQPConnection, clock: WallClock = .system, logger: Logger, batchSize: Int = 500,
                idlePoll: Duration = .seconds(1)) {
        let pass = RelayPass(pool: pool, publisher: publisher, clock: clock, batchSize: batchSize, logger: logger)
        self.pass = pass
        self.logger = logger
        // Pass after pass until the outbox is empty; then every `idlePoll`, or at once when a
        // commit wakes it. Commits made while a pass runs share the next one. An idle relay
        // does not wait for company: a wait of 2 ms after each wake-up put 2.5 ms on the median
        // at light load (4.4-5.1 ms without it, 7.0-7.8 with it; the drain's rate and the CPU per
        // command at 300 and 500 commands/s were the same within the noise).
        loop = PeriodicTask(name: "outbox relay", interval: idlePoll, runAtStart: true, logger: logger) { _ in
            try await pass.run(claim: false) > 0 || pass.hasOwn || pass.claimWanted.load(ordering: .relaxed) ? .more : .idle
        }
    }

    /// Starts a pass now that claims from the table (called after a commit that wrote events).
    public func notify() {
        pass.claimWanted.store(true, ordering: .relaxed)
        loop.notify()
    }

    /// Publishes rows this process committed and leased to itself (in commit order).
    func publishCommitted(_ rows: [OutboxRow]) {
        pass.own.withLock { $0.append(contentsOf: rows) }
        loop.notify()
    }

    public func run() async throws {
        try await loop.run()
        try await flush(deadline: .now + .seconds(10))
    }

    /// Publishes until the outbox is empty or the deadline passes (graceful shutdown).
    public func flush(deadline: ContinuousClock.Instant) async throws {
        while ContinuousClock.now < deadline {
            // Cancelled (the graceful shutdown ran out of time): its passes fail (a cancelled
            // task's waits throw), and the retry below spun until the deadline (10 s of CPU).
            if Task.isCancelled {
                logger.warning("cancelled before the outbox was flushed; another relay will publish the rest")
                return
            }
            guard let count = try? await relayOnce() else {
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            if count == 0, !pass.hasOwn { return }
        }
        logger.warning("outbox not empty at the shutdown deadline; another relay will publish the rest")
    }

    /// One pass: publish the oldest pending event of up to `batchSize` resources, then delete the
    /// ones the broker confirmed. Returns how many were published; throws when any was not (after
    /// committing the others), so the caller backs off.
    @discardableResult
    public func relayOnce() async throws -> Int { try await pass.run(claim: true) }
}

/// One pass of the relay (see `OutboxRelay.relayOnce`).
final class RelayPass: Sendable {
    let pool: PostgresPool
    let publisher: AMQPConnection
    let clock: WallClock
    let batchSize: Int
    let logger: Logger

    let publishedCounter = Metrics.Counter(label: "payfleet_outbox_published_total")
    let failures = Metrics.Counter(label: "payfleet_outbox_publish_failures_total")
    /// Rows this process committed and leased to itself, waiting to be published, in commit order.
    let own = Mutex<[OutboxRow]>([])
    var hasOwn: Bool { own.withLock { !$0.isEmpty } }
    /// When the table was last claimed from.
    private let lastClaim = Mutex(ContinuousClock.now)
    /// While busy with its own rows, a relay still claims from the table this often.
    static let claimAtLeastEvery: Duration = .seconds(1)

    /// Set by `notify`: a row was written for the claim (a rejection, an event written outside a
    /// command), so the next pass claims.
    let claimWanted = Atomic<Bool>(false)

    init(pool: PostgresPool, publisher: AMQPConnection, clock: WallClock, batchSize: Int, logger: Logger) {
        self.pool = pool
        self.publisher = publisher
        self.clock = clock
        self.batchSize = batchSize
        self.logger = logger
    }

    /// A pass: this process's own rows if any are waiting; and a claim from the table when `claim`
    /// says so, when `notify` asked, or at least every `claimAtLeastEvery` (the idle poll, and
    /// rows of a process that died). Without the last rule a busy relay claimed between two
    /// batches of its own: 26 claims a second, each scanning the leased rows, 8 ms apiece.
    func run(claim force: Bool) async throws -> Int {
        let batch = own.withLock { rows in
            defer { rows.removeFirst(min(batchSize, rows.count)) }
            return Array(rows.prefix(batchSize))
        }
        let now = ContinuousClock.now
        let wanted = claimWanted.exchange(false, ordering: .relaxed)
        let due = lastClaim.withLock { last in now - last >= Self.claimAtLeastEvery }
        let claimDue = wanted || force || due
        var published = 0
        if !batch.isEmpty { published += try await publishOwn(batch) }
        if claimDue { published += try await claim() }
        return published
    }

    /// This process's own rows: each is published unless an older row of its resource is still in
    /// the outbox (another process's, or one left to the claim), which must go first: such a row
    /// is given up to the claim, which keeps the order. Rows of one resource in one batch are
    /// given up too (a batch publishes at once, in no order).
    private func publishOwn(_ rows: [OutboxRow]) async throws -> Int {
        let blocked: Set<Int64>
        do {
            blocked = Set(try await pool.query(Self.blockedRows, [PostgresArray.bigint(rows.map(\.id)),
                                                                  PostgresArray.text(rows.map(\.resourceKey))]).rows.map { try $0.int64("id") })
        } catch {
            await release(rows.map(\.id))
            throw error
        }
        if !blocked.isEmpty {
            await release(Array(blocked))
            claimWanted.store(true, ordering: .relaxed)
        }
        return try await publishAndDelete(rows.filter { !blocked.contains($0.id) })
    }

    /// Leaves rows to the claim (best effort: if this fails, their lease ends by itself).
    private func release(_ ids: [Int64]) async {
        _ = try? await pool.query("UPDATE outbox SET lease_until = NULL WHERE id = ANY($1::bigint[])", [PostgresArray.bigint(ids.sorted())])
    }

    /// Claims the oldest pending row of up to `batchSize` resources, publishes and deletes them.
    private func claim() async throws -> Int {
        lastClaim.withLock { $0 = ContinuousClock.now }
        // 1. Claim, in a short transaction of its own: no transaction stays open while the broker
        // confirms. Losing a claim or a delete in a crash only republishes (at least once, same
        // ids), so neither waits for its WAL flush; the effects they relay did.
        let rows = try await inTransaction([.simple("SET LOCAL synchronous_commit TO off"), Self.customPlans,
                                            PostgresStatement(Self.claimRows, [self.batchSize])])[2].rows
        guard !rows.isEmpty else { return 0 }
        let events = try rows.map { row in
            OutboxRow(id: try row.int64("id"), eventId: try row.string("event_id"), eventType: try row.string("event_type"),
                      exchange: try row.string("exchange"), routingKey: try row.string("routing_key"),
                      resourceKey: try row.string("resource_key"), correlationId: try row.optionalString("correlation_id"),
                      body: try row.string("body"))
        }.sorted { $0.id < $1.id }
        return try await publishAndDelete(events)
    }

    /// Publishes `events`, deletes what the broker confirmed, and gives the rest back.
    private func publishAndDelete(_ events: [OutboxRow]) async throws -> Int {
        guard !events.isEmpty else { return 0 }
        // 2. Publish, confirms pipelined.
        let (confirmed, failure) = await publishAll(events)

        // 3. What was confirmed leaves the outbox; a merchant's event goes to its event log
        // (`notifications`) in the same statement: in publish order, so per resource in commit
        // order, and exactly once. What was not is released for the next pass.
        if !confirmed.isEmpty {
            let ids = PostgresArray.bigint(confirmed.sorted())
            // Published already: waiting a while for a row another relay's claim holds is better
            // than failing and publishing the whole batch again.
            _ = try await inTransaction([.simple("SET LOCAL synchronous_commit TO off"), .simple("SET LOCAL lock_timeout TO '60s'"),
                                         Self.customPlans, PostgresStatement("""
                WITH published AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]) RETURNING *)
                INSERT INTO notifications (event_id, merchant_id, event_type, resource_key, body, created_at)
                SELECT event_id, split_part(routing_key, '.', 2), event_type, resource_key, body, $3::timestamptz FROM published
                WHERE exchange = $2 AND routing_key LIKE 'm.%'
                ORDER BY id
                """, [ids, Exchanges.events, self.clock.now])])
        }
        publishedCounter.increment(by: confirmed.count)
        if !confirmed.isEmpty { vacuumIfDue(published: confirmed.count) }
        if let failure {
            await release(Array(Set(events.map(\.id)).subtracting(confirmed)))
            failures.increment()
            throw failure
        }
        return confirmed.count
    }

    /// The outbox is empty one moment and holds a backlog of thousands of rows the next. A generic
    /// plan made while it was empty (a sequential scan, nested in the anti-join) stays cached on
    /// the connection and turns the claim quadratic in the backlog: 100 ms a claim and 280 ms a
    /// delete at 10,000 rows, measured. Planned afresh each time, they use the indexes.
    static let customPlans = PostgresStatement.simple("SET LOCAL plan_cache_mode TO force_custom_plan")

    // The two statements below read the outbox as a whole, never once per row: no plan the
    // planner can choose for them is quadratic in the backlog. Custom plans alone were not enough.
    // The relay's own vacuum and autovacuum often find the outbox empty, so its statistics say it
    // is; with a backlog of thousands of rows the planner then answered "the oldest row of this
    // resource" by walking the primary key from the start and filtering on the resource, once per
    // row checked, and ran the claim's locking subquery once per row of the outer scan (measured,
    // a drain on a fresh database: a claim took 1.6 s and a check 0.35 s, PostgreSQL 6.2 ms per
    // command against 0.65, and the drain fell from 1,350 to 255 commands/s as leases expired and
    // every relay's claim took over rows).

    /// Of this process's own rows (`$1` ids, `$2` their resources), those with an older row of
    /// their resource still in the outbox. The oldest row of each resource named is found once,
    /// by an aggregate over the rows of those resources (the (resource_key, id) index, or one
    /// scan), and joined to the few rows checked.
    static let blockedRows = """
        SELECT r.id FROM unnest($1::bigint[], $2::text[]) AS r(id, resource_key)
        JOIN (SELECT p.resource_key, min(p.id) AS head FROM outbox p
              WHERE p.resource_key = ANY($2::text[]) GROUP BY p.resource_key) AS h ON h.resource_key = r.resource_key
        WHERE h.head < r.id
        """

    /// The claim: the oldest row of up to `$1` resources whose lease has ended, leased to this
    /// process. The heads of every resource come from one pass (`DISTINCT ON`), the oldest `$1`
    /// whose lease ended are locked by id (`SKIP LOCKED`, the lease checked again on the row
    /// locked, so a row another relay claimed meanwhile is left to it), then leased.
    static let claimRows = """
        WITH heads AS MATERIALIZED (
            SELECT DISTINCT ON (resource_key) id, lease_until FROM outbox ORDER BY resource_key, id),
        due AS MATERIALIZED (
            SELECT id FROM heads WHERE COALESCE(lease_until, '-infinity') < now() ORDER BY id LIMIT $1),
        claimed AS MATERIALIZED (
            SELECT o.id FROM outbox o
            WHERE o.id = ANY(ARRAY(SELECT id FROM due)) AND COALESCE(o.lease_until, '-infinity') < now()
            ORDER BY o.id FOR UPDATE SKIP LOCKED)
        UPDATE outbox SET lease_until = now() + interval '\(Outbox.lease)'
        WHERE id = ANY(ARRAY(SELECT id FROM claimed))
        RETURNING id, event_id, event_type, exchange, routing_key, resource_key, correlation_id, body
        """

    /// Between two autovacuums (at most one a minute) a busy outbox is thousands of pages of dead
    /// rows around a few live ones, and a claim that reads them costs 17 ms (measured at 200
    /// commands/s), and so does the check of a process's own rows (35 ms, measured without it).
    /// So a relay that published `vacuumAfterRows` since its last vacuum vacuums the
    /// table itself, at most every `vacuumEvery`; `SKIP_LOCKED` leaves it to another relay already
    /// at it. A vacuum costs PostgreSQL 100-300 ms: a relay that publishes a few rows (the clock's
    /// ticks, a sweep's events) leaves it to the busy one and to autovacuum (measured: eight
    /// processes vacuuming every 5 s cost PostgreSQL 1.6 ms of CPU per command relayed).
    static let vacuumEvery: Duration = .seconds(5)
    static let vacuumAfterRows = 2_000
    private let lastVacuum = Mutex((at: ContinuousClock.now, published: 0))

    private func vacuumIfDue(published: Int) {
        let now = ContinuousClock.now
        let due = lastVacuum.withLock { last in
            last.published += published
            guard now - last.at >= Self.vacuumEvery, last.published >= Self.vacuumAfterRows else { return false }
            last = (now, 0)
            return true
        }
        guard due else { return }
        // Beside the pass, not in it: a vacuum takes 100-900 ms, and this process's events would
        // wait for it (measured: light-load p99 622 ms with the vacuum inline).
        let pool = pool, logger = logger
        Task {
            do {
                try await pool.withConnection { try await $0.execute(simple: "VACUUM (SKIP_LOCKED) outbox") }
            } catch {
                logger.debug("could not vacuum the outbox", metadata: ["error": "\(error)"])
            }
        }
    }

    /// `statements` in one transaction, sent as one pipeline; rolled back if one fails.
    private func inTransaction(_ statements: [PostgresStatement]) async throws -> [PostgresResult] {
        try await pool.withConnection { tx in
            do {
                return Array(try await tx.batch([.begin] + statements + [.commit]).dropFirst())
            } catch {
                _ = try? await tx.batch([.rollback])
                throw error
            }
        }
    }

    /// Publishes every row at once (pipelined confirms). Returns the ids the broker confirmed,
    /// and the first failure if any row was not confirmed.
    private func publishAll(_ events: [OutboxRow]) async -> (confirmed: [Int64], failure: RelayError?) {
        await withTaskGroup(of: (Int64, RelayError?).self) { group in
            for event in events {
                group.addTask {
                    do {
                        let outcome = try await self.publisher.publish(EventMessage.make(event, at: self.clock.now))
                        return (event.id, outcome == .acked ? nil : .notConfirmed(event.eventId, "\(outcome)"))
                    } catch {
                        return (event.id, .notConfirmed(event.eventId, "\(error)"))
                    }
                }
            }
            var confirmed: [Int64] = [], failure: RelayError?
            for await (id, error) in group {
                if let error { failure = failure ?? error } else { confirmed.append(id) }
            }
            return (confirmed, failure)
        }
    }
}

enum RelayError: Error, CustomStringConvertible {
    case notConfirmed(String, String)
    var description: String {
        switch self {
        case .notConfirmed(let id, let outcome): "event \(id) was not confirmed by the broker: \(outcome)"
        }
    }
}

/// How an event travels over AMQP (CONTRACT §2): CloudEvents JSON, persistent, `message_id` = event id,
/// `type` = event type, `correlation_id` = the command id.
enum EventMessage {
    static func make(_ row: OutboxRow, at time: Date) -> AMQPMessage {
        make(exchange: row.exchange, routingKey: row.routingKey, eventId: row.eventId, type: row.eventType,
             correlationId: row.correlationId, body: row.body, at: time)
    }

    static func make(exchange: String, routingKey: String, eventId: String, type: String, correlationId: String?,
                     body: String, at time: Date) -> AMQPMessage {
        AMQPMessage(exchange: exchange, routingKey: routingKey, body: Array(body.utf8),
                    properties: AMQPProperties(contentType: CloudEvent<JSONValue>.contentType, persistent: true,
                                               messageId: eventId, type: type, correlationId: correlationId,
                                               timestamp: time))
    }
}
