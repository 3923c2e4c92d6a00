import AMQP
import Contract
import Fleet
import Foundation
import PayFleetTesting
import Payments
import Postgres
import Store
import Testing

/// Who may publish what, and hostile messages at the broker's door (issue 9 §1), with the real
/// ingress and authorize worker and broker users made through RabbitMQ's management API.
extension EndToEnd {
@Suite(.serialized) struct HardeningEndToEndTests {
    static let adminToken = "test-admin-token-0123456789"
    /// The worker's own limit, under the broker's 1 MiB, so the worker's check is seen too.
    static let workerMaxBytes = 65_536

    struct Fleet {
        let ingress: FleetProcess
        let worker: FleetProcess
        let base: String
        func stop() { ingress.stop(); worker.stop() }
    }

    static func start() async throws -> Fleet {
        let healthPort = FleetProcess.freePort(), httpPort = FleetProcess.freePort()
        let worker = try FleetProcess("payfleet-authorize", environment: ["PAYFLEET_HEALTH_PORT": "\(healthPort)",
                                                                         "PAYFLEET_MAX_MESSAGE_BYTES": "\(workerMaxBytes)"])
        let ingress = try FleetProcess("payfleet-ingress", environment: ["PAYFLEET_HTTP_PORT": "\(httpPort)", "PAYFLEET_ADMIN_TOKEN": adminToken])
        try await worker.waitUntilReady(port: healthPort)
        try await ingress.waitUntilReady(port: httpPort)
        return Fleet(ingress: ingress, worker: worker, base: "http://127.0.0.1:\(httpPort)")
    }

    /// Broker credentials for `merchantId`, from the admin route.
    static func credentials(_ fleet: Fleet, for merchantId: String) async throws -> (username: String, url: String) {
        let reply = try await HTTP.post("\(fleet.base)/api/v1/admin/merchants/\(merchantId)/broker-credentials",
                                        headers: ["Authorization": "Bearer \(adminToken)"], body: nil)
        #expect(reply.status == 201, "\(reply.text)")
        let username = try #require(reply.json["username"] as? String)
        let url = try #require(reply.json["amqp_url"] as? String)
        #expect((reply.json["password"] as? String)?.isEmpty == false)
        return (username, url)
    }

    @Test func aMerchantsBrokerUserCannotActForAnotherMerchant() async throws {
        let fleet = try await Self.start()
        defer { fleet.stop() }
        let pool = try TestEnvironment.postgres(size: 1)
        let (a, _) = try await Fixtures.merchant(pool)
        let (b, _) = try await Fixtures.merchant(pool)
        let (userA, urlA) = try await Self.credentials(fleet, for: a.merchantId)
        let unknown = try await HTTP.post("\(fleet.base)/api/v1/admin/merchants/mch_nobody/broker-credentials",
                                          headers: ["Authorization": "Bearer \(Self.adminToken)"], body: nil)
        #expect(unknown.status == 404)
        let eventsA = try await EventSubscriber.outcomes(of: a.merchantId)
        let eventsB = try await EventSubscriber.outcomes(of: b.merchantId)
        let upstreamA = try await TestEnvironment.amqp("merchant A's upstream", url: urlA)

        // For B, with A's credentials: refused, reported on A's stream, nothing for B.
        let forged = Fixtures.paymentCommand(merchantId: b.merchantId, amount: 1_000)
        try await Fixtures.publishAll([try Fixtures.message(forged)], on: upstreamA)
        // For A itself: done.
        let own = Fixtures.paymentCommand(merchantId: a.merchantId, amount: 1_000)
        try await Fixtures.publishAll([try Fixtures.message(own)], on: upstreamA)

        let outcomesA = await eventsA.wait { events in events.contains { $0.correlationId == forged.id } && events.contains { $0.correlationId == own.id } }
        let rejection = try #require(outcomesA.first { $0.correlationId == forged.id })
        #expect(rejection.type == "command.rejected")
        #expect(rejection.data["code"] as? String == "forbidden")
        #expect(outcomesA.first { $0.correlationId == own.id }?.type == "payment.succeeded")
        #expect(try await Fixtures.paymentCount(pool, b.merchantId) == 0)
        #expect(eventsB.events.isEmpty, "B's stream hears nothing of A's attempt")

        // A command without user_id passes as no one: forbidden, even from the fleet's own user.
        let anonymous = try await TestEnvironment.amqp("no user_id", stampsUserId: false)
        let unsigned = Fixtures.paymentCommand(merchantId: b.merchantId, amount: 1_000)
        let rejections = try await EventSubscriber(bindingKey: "sys.command.rejected")
        try await Fixtures.publishAll([try Fixtures.message(unsigned)], on: anonymous)
        let sysRejected = await rejections.wait { $0.contains { $0.correlationId == unsigned.id } }
        #expect(sysRejected.first { $0.correlationId == unsigned.id }?.data["code"] as? String == "forbidden")
        #expect(try await Fixtures.paymentCount(pool, b.merchantId) == 0)

        // The broker itself keeps A to its own events and queues.
        let mine = try await upstreamA.declareQueue(AMQPQueueDeclaration(name: "\(userA).events", durable: false, exclusive: true,
                                                                         autoDelete: true, arguments: [:])).name
        try await upstreamA.bind(AMQPBinding(source: "payfleet.events", destination: mine, routingKey: "m.\(a.merchantId).#"))
        await #expect(throws: (any Error).self, "reading B's events") {
            try await upstreamA.bind(AMQPBinding(source: "payfleet.events", destination: mine, routingKey: "m.\(b.merchantId).#"))
        }
        await #expect(throws: (any Error).self, "a queue not named after the user") {
            _ = try await upstreamA.declareQueue(AMQPQueueDeclaration(name: TestEnvironment.unique("someone-else"), durable: false,
                                                                      exclusive: true, autoDelete: true, arguments: [:]))
        }
        for connection in [upstreamA, anonymous] { await connection.close() }
        for subscriber in [eventsA, eventsB, rejections] { await subscriber.close() }
        await pool.close()
    }

    @Test func replyToCannotReachAForeignQueue() async throws {
        let fleet = try await Self.start()
        defer { fleet.stop() }
        let pool = try TestEnvironment.postgres(size: 1)
        let (a, _) = try await Fixtures.merchant(pool)
        let (userA, urlA) = try await Self.credentials(fleet, for: a.merchantId)
        let upstreamA = try await TestEnvironment.amqp("merchant A's upstream", url: urlA)
        let admin = try await TestEnvironment.amqp("victim's owner")
        let victim = TestEnvironment.unique("victim")
        _ = try await admin.declareQueue(AMQPQueueDeclaration(name: victim, durable: false, exclusive: false, autoDelete: false, arguments: [:]))
        let own = try await upstreamA.declareQueue(AMQPQueueDeclaration(name: "\(userA).replies", durable: false, exclusive: true,
                                                                        autoDelete: true, arguments: [:])).name
        let events = try await EventSubscriber.outcomes(of: a.merchantId)

        let aimed = Fixtures.paymentCommand(merchantId: a.merchantId, amount: 1_000)
        let owned = Fixtures.paymentCommand(merchantId: a.merchantId, amount: 1_000)
        try await Fixtures.publishAll([try Fixtures.message(aimed, replyTo: victim), try Fixtures.message(owned, replyTo: own)], on: upstreamA)
        let outcomes = await events.wait { events in [aimed.id, owned.id].allSatisfy { id in events.contains { $0.correlationId == id } } }
        #expect(outcomes.first { $0.correlationId == aimed.id }?.type == "payment.succeeded",
                "the outcome still goes to the event exchange")
        var reply: AMQPDelivery?
        for _ in 0..<100 where reply == nil {
            reply = try await upstreamA.get(queue: own, noAck: true)
            if reply == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(reply?.properties.correlationId == owned.id, "a queue the sender owns gets its outcome")
        #expect(try await admin.declareQueuePassive(victim).messageCount == 0, "someone else's queue gets nothing")
        try await admin.deleteQueue(victim)
        for connection in [upstreamA, admin] { await connection.close() }
        await events.close()
        await pool.close()
    }

    @Test func oversizedCommandsAreRefusedAndTheWorkerStaysHealthy() async throws {
        let fleet = try await Self.start()
        defer { fleet.stop() }
        let pool = try TestEnvironment.postgres(size: 1)
        let (merchant, _) = try await Fixtures.merchant(pool)
        // A body refused unread names no merchant it can be trusted for: its rejection is a system event.
        let events = try await EventSubscriber(bindingKeys: ["m.\(merchant.merchantId).#", "sys.command.rejected"])
        let parked = try await EventSubscriber(exchange: Exchanges.parking, bindingKey: "payfleet.authorize")

        // 2 MiB: the broker refuses the publish itself (max_message_size).
        let broker = try await TestEnvironment.amqp("big publisher")
        var huge = Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: 1_000)
        huge.data.subject = String(repeating: "x", count: 2 << 20)
        await #expect(throws: (any Error).self) { try await Fixtures.publishAll([try Fixtures.message(huge)], on: broker) }

        // 100 KiB: over the worker's limit; rejected unread and parked with the reason.
        let broker2 = try await TestEnvironment.amqp("big publisher 2")
        var big = Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: 1_000)
        big.data.subject = String(repeating: "y", count: 100 << 10)
        let small = Fixtures.paymentCommand(merchantId: merchant.merchantId, amount: 1_000)
        try await Fixtures.publishAll([try Fixtures.message(big), try Fixtures.message(small)], on: broker2)
        // The small command causes two events, `payment.succeeded` and `order.updated`, of two
        // resources: the relay publishes those in no set order, so wait for the one that matters.
        let succeeded = { (event: EventSubscriber.Received) in event.correlationId == small.id && event.type == "payment.succeeded" }
        let outcomes = await events.wait { events in events.contains { $0.correlationId == big.id } && events.contains(where: succeeded) }
        let rejection = try #require(outcomes.first { $0.correlationId == big.id })
        #expect(rejection.type == "command.rejected" && rejection.data["code"] as? String == "invalid_request")
        #expect((rejection.data["message"] as? String)?.contains("at most \(Self.workerMaxBytes)") == true)
        #expect(outcomes.contains(where: succeeded), "the worker goes on")
        #expect(!outcomes.contains { $0.correlationId == small.id && $0.type == "command.rejected" })
        let parkedBig = await parked.wait { $0.contains { $0.headers["x-parked-reason"] != nil && String(decoding: $0.body, as: UTF8.self).contains(big.id) } }
        #expect(!parkedBig.isEmpty)
        #expect(fleet.worker.isRunning)
        for connection in [broker, broker2] { await connection.close() }
        for subscriber in [events, parked] { await subscriber.close() }
        await pool.close()
    }

    @Test func twoMerchantsEqualCommandIdsGetDistinctEventIds() async throws {
        let fleet = try await Self.start()
        defer { fleet.stop() }
        let pool = try TestEnvironment.postgres(size: 1)
        let (a, _) = try await Fixtures.merchant(pool)
        let (b, _) = try await Fixtures.merchant(pool)
        let events = try await EventSubscriber(bindingKeys: ["m.\(a.merchantId).#", "m.\(b.merchantId).#"])
        let id = MessageIds.newCommandId()
        let broker = try await TestEnvironment.amqp("upstream")
        try await Fixtures.publishAll([try Fixtures.message(Fixtures.paymentCommand(merchantId: a.merchantId, amount: 1_000, id: id)),
                                       try Fixtures.message(Fixtures.paymentCommand(merchantId: b.merchantId, amount: 1_000, id: id))],
                                      on: broker)
        let outcomes = await events.wait { EventSubscriber.distinct($0, type: "payment.succeeded").count >= 2 }
        let succeeded = EventSubscriber.distinct(outcomes, type: "payment.succeeded")
        #expect(succeeded.count == 2, "a subscriber deduplicating on id keeps both")
        #expect(Set(succeeded.map(\.routingKey)) == ["m.\(a.merchantId).payment.succeeded", "m.\(b.merchantId).payment.succeeded"])
        await broker.close()
        await events.close()
        await pool.close()
    }

    @Test func everyRouteIsInTheOpenAPIDocumentAndUnknownRoutesAnswerProblems() async throws {
        let fleet = try await Self.start()
        defer { fleet.stop() }
        // The router's own list, from the executable.
        let printer = try FleetProcess("payfleet-ingress", arguments: ["--print-routes"], environment: ["PAYFLEET_ADMIN_TOKEN": Self.adminToken])
        #expect(await printer.waitForExit() == 0)
        let registered = Set(printer.log.split(separator: "\n").map(String.init).filter { $0.contains(" /") && !$0.hasPrefix("{") })
        #expect(registered.count > 30, "\(printer.log)")
        // The document the ingress serves.
        let served = try await HTTP.get("\(fleet.base)/openapi.json")
        #expect(served.status == 200)
        let document = try #require(try JSONSerialization.jsonObject(with: served.body) as? [String: Any])
        #expect((document["openapi"] as? String)?.hasPrefix("3.1") == true)
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        let methods: Set<String> = ["get", "put", "post", "delete", "patch", "head", "options"]
        let documented = Set(paths.flatMap { path, item in item.keys.filter(methods.contains).map { "\($0.uppercased()) \(path)" } })
        #expect(registered.subtracting(documented).isEmpty, "routes the document misses: \(registered.subtracting(documented).sorted())")
        #expect(documented.subtracting(registered).isEmpty, "documented routes that do not exist: \(documented.subtracting(registered).sorted())")

        let unknown = try await HTTP.get("\(fleet.base)/api/v1/no-such-thing")
        #expect(unknown.status == 404 && unknown.header("Content-Type") == "application/problem+json")
        #expect(unknown.json["code"] as? String == "not_found")
        let wrongMethod = try await HTTP.request("DELETE", "\(fleet.base)/api/v1/payments", headers: [:], body: nil)
        #expect(wrongMethod.status == 405 && wrongMethod.json["code"] as? String == "method_not_allowed")
        #expect(wrongMethod.header("Allow") == "POST")
        // A literal segment wins over a parameter, as in the router: /orders/batch is not an order.
        let batch = try await HTTP.request("OPTIONS", "\(fleet.base)/api/v1/orders/batch", headers: [:], body: nil)
        #expect(batch.status == 405 && batch.header("Allow") == "POST")
    }

    @Test func aFloodOfBadKeysIsLimitedPerAddress() async throws {
        let httpPort = FleetProcess.freePort()
        let ingress = try FleetProcess("payfleet-ingress", environment: ["PAYFLEET_HTTP_PORT": "\(httpPort)", "PAYFLEET_ADMIN_TOKEN": Self.adminToken,
                                                                        "PAYFLEET_UNAUTHENTICATED_PER_MINUTE": "5"])
        defer { ingress.stop() }
        try await ingress.waitUntilReady(port: httpPort)
        var statuses: [Int] = []
        for index in 0..<8 {
            let reply = try await HTTP.get("http://127.0.0.1:\(httpPort)/api/v1/merchant", headers: ["Authorization": "Bearer sk_bad_\(index)"])
            statuses.append(reply.status)
            if reply.status == 429 { #expect(reply.header("Retry-After") != nil && reply.json["code"] as? String == "rate_limited") }
        }
        // Five misses within a minute are answered; the rest wait for that minute to pass.
        #expect(statuses == [401, 401, 401, 401, 401, 429, 429, 429])
    }

    @Test func retentionPrunesOldIdempotencyRecordsOnly() async throws {
        let healthPort = FleetProcess.freePort()
        let archive = try FleetProcess("payfleet-archive", environment: ["PAYFLEET_HEALTH_PORT": "\(healthPort)", "PAYFLEET_PRUNE_BATCH": "2"])
        defer { archive.stop() }
        try await archive.waitUntilReady(port: healthPort)
        let pool = try TestEnvironment.postgres(size: 1)
        let merchant = TestEnvironment.unique("mch_retention")
        for (key, inboxAge, keyAge) in [("old-1", "8 days", "25 hours"), ("old-2", "8 days", "25 hours"),
                                        ("old-3", "7 days 1 hour", "25 hours"), ("recent", "6 days", "23 hours")] {
            _ = try await pool.query("""
                INSERT INTO inbox (merchant_id, idempotency_key, command_id, command_type, request_hash, created_at)
                VALUES ($1, $2, $2, 'payment.create', 'h', now() - $3::interval)
                """, [merchant, key, inboxAge])
            _ = try await pool.query("""
                INSERT INTO http_idempotency (merchant_id, idempotency_key, request_hash, state, created_at)
                VALUES ($1, $2, 'h', 'done', now() - $3::interval)
                """, [merchant, key, keyAge])
        }
        let events = try await EventSubscriber(bindingKey: "sys.retention.pruned")
        let broker = try await TestEnvironment.amqp("clock stand-in")
        let command = CloudEvent(id: MessageIds.newCommandId(), type: "retention.prune", source: "/test", time: Timestamp.format(Date()),
                                 merchantId: nil, data: JSONValue.object([:]))
        try await Fixtures.publishAll([try Fixtures.message(command)], on: broker)
        // At most two rows per table per delivery: the first hands the rest to a follow-up. Other
        // tests' old rows may be pruned too, so wait for a run that finished.
        let reports = await events.wait { events in events.contains { $0.data["finished"] as? Bool == true } }
        #expect(reports.contains { $0.data["finished"] as? Bool == false }, "a batch of two left work for a follow-up")
        let inbox = try await pool.query("SELECT idempotency_key FROM inbox WHERE merchant_id = $1 ORDER BY 1", [merchant])
        #expect(try inbox.rows.map { try $0.string("idempotency_key") } == ["recent"])
        let keys = try await pool.query("SELECT idempotency_key FROM http_idempotency WHERE merchant_id = $1 ORDER BY 1", [merchant])
        #expect(try keys.rows.map { try $0.string("idempotency_key") } == ["recent"])
        await broker.close()
        await events.close()
        await pool.close()
    }

    @Test func withRedisAwayMerchantRoutesAnswer503WithRetryAfter() async throws {
        // An ingress whose Redis is not there (nothing listens on port 1).
        let port = FleetProcess.freePort()
        let ingress = try FleetProcess("payfleet-ingress", environment: ["PAYFLEET_HTTP_PORT": "\(port)", "PAYFLEET_ADMIN_TOKEN": Self.adminToken,
                                                                        "PAYFLEET_REDIS_URL": "redis://127.0.0.1:1/0"])
        defer { ingress.stop() }
        #expect(try await eventually { (try? await HTTP.get("http://127.0.0.1:\(port)/healthz"))?.status == 200 })
        let pool = try TestEnvironment.postgres(size: 1)
        let (_, apiKey) = try await Fixtures.merchant(pool)
        let reply = try await HTTP.get("http://127.0.0.1:\(port)/api/v1/merchant", headers: ["Authorization": "Bearer \(apiKey)"])
        #expect(reply.status == 503)
        #expect(reply.json["code"] as? String == "service_unavailable")
        #expect(reply.header("Retry-After") == "5")
        #expect(reply.header("Content-Type") == "application/problem+json")
        let ready = try await HTTP.get("http://127.0.0.1:\(port)/readyz")
        #expect(ready.status == 503, "readiness says why")
        await pool.close()
    }

    @Test func logLinesCannotBeForged() async throws {
        let fleet = try await Self.start()
        defer { fleet.stop() }
        let marker = "FORGED-\(UUID().uuidString.prefix(8))"
        let forged = #"{"level":"error","message":"\#(marker)"}"#
        let broker = try await TestEnvironment.amqp("log forger")
        let parked = try await EventSubscriber(exchange: Exchanges.parking, bindingKey: "payfleet.authorize")
        let messageId = "x\n\(forged)"
        let message = AMQPMessage(exchange: Exchanges.commands, routingKey: "payment.create", body: Array("not json".utf8),
                                  properties: AMQPProperties(contentType: "application/json", persistent: true, messageId: messageId,
                                                             type: "payment.create\n\(forged)"),
                                  mandatory: true)
        try await Fixtures.publishAll([message], on: broker)
        _ = await parked.wait { $0.contains { $0.headers["x-parked-reason"] != nil && $0.body == Array("not json".utf8) } }
        let lines = fleet.worker.log.split(separator: "\n", omittingEmptySubsequences: true)
        #expect(lines.contains { $0.contains(marker) }, "the message id is logged, escaped")
        #expect(!lines.contains { $0.hasPrefix(#"{"level":"error","message":"FORGED"#) }, "no line of the publisher's making")
        await broker.close()
        await parked.close()
    }
}
}
