import AMQP
import Contract
@testable import Fleet
import Foundation
import PayFleetTesting
import Payments
import Postgres
import Store
import Testing

/// The runtime against real RabbitMQ and PostgreSQL: inbox, outbox, retries, parking.
@Suite(.serialized) struct InboxOutboxTests {
    @Test func duplicatesTakeEffectOnceAndReEmitTheSameEvent() async throws {
        let harness = try await RuntimeHarness()
        let merchant = TestEnvironment.unique("mch")
        let events = try await EventSubscriber(bindingKey: "m.\(merchant).#")
        let account = TestEnvironment.unique("acct")
        let first = harness.command(account: account, merchantId: merchant, key: "key-1")
        // The same command three times, then a re-publish under a new id with the same key. The
        // re-publish goes once the first took effect: sent together (the worker runs four at
        // once), either command may claim the key first, and its id names the event.
        for _ in 0..<3 { try await harness.send(first) }
        _ = await events.wait { !$0.isEmpty }
        try await harness.send(harness.command(account: account, merchantId: merchant, key: "key-1"))

        let received = await events.wait { $0.count >= 4 }
        #expect(received.count == 4)
        #expect(Set(received.map(\.eventId)).count == 1, "every duplicate re-emits the first outcome's event id")
        #expect(received.allSatisfy { $0.type == "ledger.posted" })
        #expect(received.first?.eventId == MessageIds.eventId(merchantId: merchant, commandId: first.id, type: "ledger.posted"))
        #expect(try await harness.effects(account: account).count == 1)
        await events.close()
        await harness.close()
    }

    @Test func sameKeyWithAnotherPayloadIsRejected() async throws {
        let harness = try await RuntimeHarness()
        let merchant = TestEnvironment.unique("mch")
        let events = try await EventSubscriber(bindingKey: "m.\(merchant).#")
        let account = TestEnvironment.unique("acct")
        try await harness.send(harness.command(account: account, amount: 100, merchantId: merchant, key: "k"))
        _ = await events.wait { $0.count >= 1 }
        let second = harness.command(account: account, amount: 999, merchantId: merchant, key: "k")
        try await harness.send(second)
        let received = await events.wait { $0.count >= 2 }
        let rejection = try #require(received.first { $0.type == "command.rejected" })
        #expect(rejection.data["code"] as? String == "idempotency_key_reused")
        #expect(rejection.correlationId == second.id)
        #expect(try await harness.effects(account: account).count == 1)
        await events.close()
        await harness.close()
    }

    @Test func outcomeIsSentToReplyTo() async throws {
        let harness = try await RuntimeHarness()
        let replies = try await TestEnvironment.amqp("reply listener", confirms: false)
        // A queue the sender owns: named with its broker user and a dot.
        let user = try AMQPURL(TestEnvironment.amqpURL).user
        let replyQueue = try await replies.declareQueue(AMQPQueueDeclaration(name: TestEnvironment.unique("\(user).replies"), durable: false,
                                                                             exclusive: true, autoDelete: true, arguments: [:])).name
        _ = try await replies.consume(ConsumeSpec(queue: replyQueue, noAck: true))
        let command = harness.command(account: TestEnvironment.unique("acct"))
        try await harness.send(command, replyTo: replyQueue)
        var iterator = replies.deliveries.makeAsyncIterator()
        let reply = await iterator.next()
        #expect(reply?.properties.correlationId == command.id)
        #expect(reply?.properties.type == "ledger.posted")
        await replies.close()
        await harness.close()
    }

    @Test func poisonMessagesAreParkedWithTheirReasonAndTheWorkerGoesOn() async throws {
        let harness = try await RuntimeHarness()
        let parked = try await EventSubscriber(exchange: Exchanges.parking, bindingKey: "")
        try await harness.sendRaw("this is not JSON", messageId: "poison-1")
        try await harness.sendRaw(#"{"specversion":"1.0","id":"poison-2","type":"ledger.post","source":"/t","data":{"account":"a","amount":1}}"#,
                                  messageId: "poison-2") // no merchantid
        try await harness.sendRaw(#"{"specversion":"1.0","id":"poison-3","type":"ledger.post","source":"/t","merchantid":"m","data":{"account":"a","amount":-5}}"#,
                                  messageId: "poison-3")
        try await harness.sendRaw(#"{"specversion":"1.0","id":"poison-4","type":"no.such.command","source":"/t","merchantid":"m","data":{}}"#,
                                  type: "no.such.command", messageId: "poison-4")
        try await harness.sendRaw(#"{"specversion":"1.0","id":"poison-5","type":"ledger.post","source":"/t","merchantid":"m","data":{"account":"x'); DROP TABLE payments; --","amount":"1e400"}}"#,
                                  messageId: "poison-5")
        let mine = await parked.wait { events in
            Set(events.filter { $0.headers[FleetHeaders.parkedQueue] == .string(harness.queue) }.map(\.eventId)).count >= 5
        }.filter { $0.headers[FleetHeaders.parkedQueue] == .string(harness.queue) }
        let reasons = Dictionary(mine.map { ($0.eventId, $0.headers[FleetHeaders.parkedReason]) }, uniquingKeysWith: { a, _ in a })
        #expect(Set(reasons.keys) == ["poison-1", "poison-2", "poison-3", "poison-4", "poison-5"])
        if case .string(let reason)? = reasons["poison-1"] { #expect(reason.contains("invalid_request")) } else { Issue.record("no reason") }
        if case .string(let reason)? = reasons["poison-3"] { #expect(reason.contains("amount")) } else { Issue.record("no reason") }
        if case .string(let reason)? = reasons["poison-4"] { #expect(reason.contains("unsupported_command")) } else { Issue.record("no reason") }

        // Still alive and working.
        let account = TestEnvironment.unique("acct")
        try await harness.send(harness.command(account: account))
        #expect(try await eventually { try await harness.effects(account: account).count == 1 })
        await parked.close()
        await harness.close()
    }

    @Test func retryLaterGoesThroughTheDelayQueueAndComesBack() async throws {
        let harness = try await RuntimeHarness()
        // The retry must go to the 1 s delay queue only (a headers binding with x-match "all"
        // would ignore x- headers and copy it to all five). The longer queues are shared with
        // every other suite's retries, so their depth says nothing: a probe bound as they are
        // receives a copy of what the broker routes to them.
        let topology = try TopologyFile.load(explicitPath: TestEnvironment.topologyPath)
        let longer = Set(RetryPolicy.levels.dropFirst().map { "payfleet.retry.\($0)" })
        let probeBindings = topology.bindings.filter { longer.contains($0.destination) }
        #expect(probeBindings.count == longer.count, "a binding per longer delay queue")
        let probe = try await EventSubscriber(boundLike: probeBindings)
        let account = TestEnvironment.unique("retry-once")
        let command = harness.command(account: account)
        try await harness.send(command)
        #expect(try await eventually(timeout: .seconds(30)) { try await harness.effects(account: account).count == 1 })
        #expect(try await harness.effects(account: account).first?.attempt == 1)
        #expect(!probe.events.contains { $0.eventId == command.id }, "a copy in a longer delay queue")
        await probe.close()
        await harness.close()
    }

    @Test func retriesAreBoundedThenParked() async throws {
        let harness = try await RuntimeHarness(maxRetries: 1)
        let parked = try await EventSubscriber(exchange: Exchanges.parking, bindingKey: "")
        let command = harness.command(account: TestEnvironment.unique("always-retry"))
        try await harness.send(command)
        let found = await parked.wait(timeout: .seconds(30)) { $0.contains { $0.eventId == command.id } }
        let entry = try #require(found.first { $0.eventId == command.id })
        guard case .string(let reason)? = entry.headers[FleetHeaders.parkedReason] else { Issue.record("no reason"); return }
        #expect(reason.contains("gave up after 1 retries"))
        #expect(entry.headers[FleetHeaders.retryCount] == .int(1))
        await parked.close()
        await harness.close()
    }

    /// An outage on the last attempt used to park a good command without an outcome.
    @Test func aStoreOutageDoesNotSpendARetry() async throws {
        let harness = try await RuntimeHarness(maxRetries: 0)
        let events = try await EventSubscriber(exchange: Exchanges.events, bindingKey: "#")
        let command = harness.command(account: TestEnvironment.unique("outage-once"), merchantId: TestEnvironment.unique("mch"))
        try await harness.send(command)
        #expect(try await eventually(timeout: .seconds(30)) { try await harness.effects(account: command.data.account).count == 1 })
        #expect(try await harness.effects(account: command.data.account).first?.attempt == 0, "the outage did not count as an attempt")
        let outcome = await events.wait(timeout: .seconds(30)) { $0.contains { $0.correlationId == command.id } }
        #expect(EventSubscriber.distinct(outcome.filter { $0.correlationId == command.id }).map(\.type) == ["ledger.posted"])
        #expect(try await harness.pool.query("SELECT 1 FROM fleet_test_parked WHERE command_id = $1", [command.id]).rows.isEmpty)
        await events.close()
        await harness.close()
    }

    @Test func aRerunPreparesOutsideTheTransactionThenRunsAgainAtOnce() async throws {
        let harness = try await RuntimeHarness(maxRetries: 1)
        let once = harness.command(account: TestEnvironment.unique("rerun-once"))
        let always = harness.command(account: TestEnvironment.unique("always-rerun"))
        let parked = try await EventSubscriber(exchange: Exchanges.parking, bindingKey: "")
        try await harness.send(once)
        try await harness.send(always)
        #expect(try await eventually(timeout: .seconds(30)) { try await harness.effects(account: once.data.account).count == 1 })
        #expect(try await harness.effects(account: once.data.account).first?.attempt == 0, "run again at once, not redelivered")
        func prepared(_ id: String) async throws -> [Int] {
            try await harness.pool.query("SELECT attempt FROM fleet_test_prepared WHERE command_id = $1 ORDER BY attempt", [id])
                .rows.map { try $0.int("attempt") }
        }
        #expect(try await prepared(once.id) == [0])

        // Bounded: three reruns per delivery, then the delay queue, then parked.
        let found = await parked.wait(timeout: .seconds(30)) { $0.contains { $0.eventId == always.id } }
        #expect(found.contains { $0.eventId == always.id })
        #expect(try await prepared(always.id) == [0, 0, 0, 1, 1, 1])
        #expect(try await harness.effects(account: always.data.account).isEmpty)
        await parked.close()
        await harness.close()
    }

    @Test func aFailingHandlerRollsBackItsEffectAndInboxRow() async throws {
        let harness = try await RuntimeHarness(maxRetries: 0)
        let parked = try await EventSubscriber(exchange: Exchanges.parking, bindingKey: "")
        let command = harness.command(account: TestEnvironment.unique("throw-after-write"), merchantId: TestEnvironment.unique("mch"))
        try await harness.send(command)
        _ = await parked.wait { $0.contains { $0.eventId == command.id } }
        #expect(try await harness.effects(account: command.data.account).isEmpty)
        let inbox = try await harness.pool.query("SELECT 1 FROM inbox WHERE merchant_id = $1", [command.merchantid!])
        #expect(inbox.rows.isEmpty)
        await parked.close()
        await harness.close()
    }
}

/// The outbox relay: per-resource commit order with concurrent relays, and resumption after failure.
/// Each test has an outbox of its own (a private schema first on the search path), so no other
/// relay running in this process or in a spawned worker takes its rows.
@Suite(.serialized) struct OutboxRelayTests {
    /// A pool whose `outbox` is a fresh, private copy of the real table.
    func insert(_ rows: [OutboxRow], pool: PostgresPool) async throws {
        try await pool.withConnection { _ = try await $0.batch([.begin] + rows.map { Outbox.append($0, at: Date()) } + [.commit]) }
    }

    @Test func concurrentRelaysKeepEachResourcesOrder() async throws {
        let outbox = try await PrivateSchema(copying: ["outbox"])
        let pool = outbox.pool, topic = outbox.name
        let events = try await EventSubscriber(bindingKey: "sys.\(topic).#")
        var rows: [OutboxRow] = []
        for sequence in 0..<30 {
            for resource in ["a", "b", "c"] {
                rows.append(OutboxRow(eventId: "\(topic)-\(resource)-\(sequence)", eventType: "test.event", exchange: Exchanges.events,
                                      routingKey: "sys.\(topic).\(resource)", resourceKey: "\(topic):\(resource)", correlationId: nil,
                                      body: "{\"seq\":\(sequence)}"))
            }
        }
        try await insert(rows, pool: pool)
        let publisherA = try await TestEnvironment.amqp("relay a"), publisherB = try await TestEnvironment.amqp("relay b")
        let relays = [OutboxRelay(pool: pool, publisher: publisherA, logger: TestEnvironment.logger, batchSize: 7),
                      OutboxRelay(pool: pool, publisher: publisherB, logger: TestEnvironment.logger, batchSize: 5)]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for relay in relays {
                group.addTask { while try await relay.relayOnce() > 0 {} }
            }
            try await group.waitForAll()
        }
        let received = await events.wait { $0.count >= 90 }
        #expect(received.count == 90, "each event exactly once when no relay failed")
        for resource in ["a", "b", "c"] {
            let order = received.filter { $0.routingKey.hasSuffix(".\(resource)") }.map(\.eventId)
            #expect(order == (0..<30).map { "\(topic)-\(resource)-\($0)" })
        }
        let left = try await pool.query("SELECT count(*) AS n FROM outbox", [])
        #expect(try left.rows[0].int("n") == 0)
        await events.close()
        await publisherA.close()
        await publisherB.close()
        await outbox.drop()
    }

    /// A process publishes its own commits from memory, but never ahead of an older row of the
    /// same resource still in the outbox (another process's, unpublished): that row goes first.
    @Test func ownRowsWaitForAnOlderRowOfTheirResource() async throws {
        let outbox = try await PrivateSchema(copying: ["outbox"])
        let pool = outbox.pool, topic = outbox.name
        let events = try await EventSubscriber(bindingKey: "sys.\(topic).#")
        func row(_ id: String, _ resource: String) -> OutboxRow {
            OutboxRow(eventId: "\(topic)-\(id)", eventType: "test.event", exchange: Exchanges.events, routingKey: "sys.\(topic).\(resource)",
                      resourceKey: "\(topic):\(resource)", correlationId: nil, body: "{}")
        }
        // Another process's row of resource r1, committed first and not published yet.
        try await insert([row("older", "r1")], pool: pool)
        // This process's commit: a row of r1 and one of r2, leased to it.
        var own = [row("newer", "r1"), row("alone", "r2")]
        let results = try await pool.withConnection {
            try await $0.batch([.begin] + own.map { Outbox.append($0, at: Date(), leased: true) } + [.commit])
        }
        for index in own.indices { own[index].id = try results[index + 1].rows[0].int64("id") }

        let publisher = try await TestEnvironment.amqp("own relay")
        let relay = OutboxRelay(pool: pool, publisher: publisher, logger: TestEnvironment.logger)
        relay.publishCommitted(own)
        while try await relay.relayOnce() > 0 || relay.pass.hasOwn {}
        let received = await events.wait { $0.count >= 3 }
        #expect(received.filter { $0.routingKey.hasSuffix(".r1") }.map(\.eventId) == ["\(topic)-older", "\(topic)-newer"])
        #expect(received.map(\.eventId).contains("\(topic)-alone"))
        #expect(received.count == 3)
        #expect(try await pool.query("SELECT count(*) AS n FROM outbox", []).rows[0].int("n") == 0)
        await events.close()
        await publisher.close()
        await outbox.drop()
    }

    /// The outbox's statistics often say it is empty (a vacuum found it so a moment before), while
    /// it holds a backlog. The claim and the check of a process's own rows must then still read it
    /// a bounded number of times, not once per row: counted in buffer reads, not timed.
    @Test func claimAndOwnRowCheckStayLinearWhenTheStatisticsSayTheOutboxIsEmpty() async throws {
        let outbox = try await PrivateSchema(copying: ["outbox"])
        let pool = outbox.pool
        // As after a busy spell: 20,000 rows published and deleted, then a vacuum that finds the
        // table empty but keeps its pages, so its statistics say 0 rows in 345 pages (unless a
        // concurrent test's open transaction keeps the deleted rows: see the bound below).
        try await pool.withConnection { connection in
            try await connection.execute(simple: """
                INSERT INTO outbox (event_id, event_type, exchange, routing_key, resource_key, body, created_at)
                SELECT 'old' || g, 'test.event', 'x', 'k', 'order:mch_0123456789abcdefghij:order-' || md5(g::text), '{}', now()
                FROM generate_series(1, 20000) AS g;
                DELETE FROM outbox
                """)
            try await connection.execute(simple: "VACUUM (ANALYZE, TRUNCATE false) outbox")
        }
        // Then a backlog: 6,000 rows of 3,000 resources, most leased (own rows waiting), one in 40
        // due for a claim.
        _ = try await pool.query("""
            INSERT INTO outbox (event_id, event_type, exchange, routing_key, resource_key, body, created_at, lease_until)
            SELECT 'e' || g, 'test.event', 'x', 'k', 'order:mch_0123456789abcdefghij:order-' || md5((g % 3000)::text), '{}', now(),
                   CASE WHEN g % 40 = 0 THEN NULL ELSE now() + interval '1 hour' END
            FROM generate_series(1, 6000) AS g
            """, [])
        let pages = try await pool.query("SELECT (pg_total_relation_size('outbox') / 8192)::bigint AS pages", []).rows[0].int("pages")
        let own = try await pool.query("SELECT id, resource_key FROM outbox WHERE id % 20 = 0 ORDER BY id", []).rows
        let ownIds = PostgresArray.bigint(try own.map { try $0.int64("id") })
        let ownResources = PostgresArray.text(try own.map { try $0.string("resource_key") })

        let claim = try await outbox.buffersRead(RelayPass.claimRows, [500], settings: [RelayPass.customPlans])
        let check = try await outbox.buffersRead(RelayPass.blockedRows, [ownIds, ownResources], settings: [RelayPass.customPlans])
        // Linear: a few reads per row version and per page. The table holds up to 26,000 versions:
        // the vacuum cannot free the deleted rows while a transaction elsewhere (a concurrent test)
        // is older than the delete, and then the claim's index scan visits them all (measured:
        // 27,802 buffers of 1,150 pages, against 7,503 of 1,024 when the vacuum freed them). The
        // quadratic claim this guards against read 5,461,069 buffers of 1,024 pages.
        let bound = 2 * 26_000 + 20 * pages
        #expect(claim <= bound, "the claim read \(claim) buffers of an outbox of \(pages) pages")
        #expect(check <= bound, "the check read \(check) buffers of an outbox of \(pages) pages")
        // And they still answer right: the claim takes the due heads, the check finds the own rows
        // that have an older row of their resource (every resource has two rows).
        let claimed = try await pool.query(RelayPass.claimRows, [500]).rows.map { try $0.string("event_id") }
        let expectedHeads = (1...6000).filter { $0 % 40 == 0 && $0 <= 3000 }.map { "e\($0)" }
        #expect(Set(claimed) == Set(expectedHeads))
        let blocked = try await pool.query(RelayPass.blockedRows, [ownIds, ownResources]).rows.map { try $0.int64("id") }
        let expectedBlocked = try await pool.query("""
            SELECT o.id FROM outbox o WHERE o.id % 20 = 0
              AND EXISTS (SELECT 1 FROM outbox p WHERE p.resource_key = o.resource_key AND p.id < o.id)
            """, []).rows.map { try $0.int64("id") }
        #expect(Set(blocked) == Set(expectedBlocked))
        #expect(!expectedBlocked.isEmpty)
        await outbox.drop()
    }

    @Test func aRelayThatFailedLeavesItsRowsForTheNext() async throws {
        let outbox = try await PrivateSchema(copying: ["outbox"])
        let pool = outbox.pool, topic = outbox.name
        let events = try await EventSubscriber(bindingKey: "sys.\(topic).#")
        try await insert((0..<10).map {
            OutboxRow(eventId: "\(topic)-\($0)", eventType: "test.event", exchange: Exchanges.events, routingKey: "sys.\(topic).x",
                      resourceKey: "\(topic):\($0)", correlationId: nil, body: "{}")
        }, pool: pool)
        // A relay whose broker connection is gone cannot get confirms: its pass fails, and deletes nothing.
        let dead = try await TestEnvironment.amqp("dead relay")
        await dead.close()
        await #expect(throws: RelayError.self) { try await OutboxRelay(pool: pool, publisher: dead, logger: TestEnvironment.logger).relayOnce() }
        let pending = try await pool.query("SELECT count(*) AS n FROM outbox", [])
        #expect(try pending.rows[0].int("n") == 10)
        #expect(events.events.isEmpty)
        // The next relay resumes them.
        let live = try await TestEnvironment.amqp("live relay")
        let relay = OutboxRelay(pool: pool, publisher: live, logger: TestEnvironment.logger)
        while try await relay.relayOnce() > 0 {}
        #expect(await events.wait { $0.count >= 10 }.count == 10)
        #expect(try await pool.query("SELECT count(*) AS n FROM outbox", []).rows[0].int("n") == 0)
        await events.close()
        await live.close()
        await outbox.drop()
    }
}
