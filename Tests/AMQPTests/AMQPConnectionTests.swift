import AMQP
import Foundation
import Logging
import PayFleetTesting
import Testing

/// Integration tests against the RabbitMQ at `PAYFLEET_AMQP_URL`. Each test uses its own
/// uniquely named queues and exchanges and deletes them at the end; the suite runs
/// serialized to keep the load on a small machine predictable.
@Suite(.serialized) struct AMQPConnectionTests {
    /// A body with every byte value, NUL included, plus the index.
    static func body(_ index: Int, size: Int = 64) -> [UInt8] {
        var bytes: [UInt8] = [0x00, 0xFF, 0x00]
        withUnsafeBytes(of: UInt32(index).bigEndian) { bytes.append(contentsOf: $0) }
        while bytes.count < size { bytes.append(UInt8(truncatingIfNeeded: bytes.count &* 31)) }
        return bytes
    }

    static func index(of body: [UInt8]) -> Int {
        Int(body[3...6].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
    }

    @Test func pipelinedConfirmedPublishesAreAllConsumedBackIntact() async throws {
        let queue = Broker.unique("confirms")
        let publisher = try await Broker.connected(Broker.unique("publisher"), confirms: true)
        _ = try await publisher.declareQueue(AMQPQueueDeclaration(name: queue, durable: false))

        let count = 1_000
        // Message 0 is larger than a frame (128 KiB), so its body arrives in several frames.
        let outcomes = try await bounded("1,000 confirmed publishes", .seconds(30)) {
            try await withThrowingTaskGroup(of: PublishOutcome.self) { group in
                for index in 0..<count {
                    group.addTask {
                        try await publisher.publish(to: queue, Self.body(index, size: index == 0 ? 300_000 : 64))
                    }
                }
                return try await group.reduce(into: [PublishOutcome]()) { $0.append($1) }
            }
        }
        #expect(outcomes.count == count)
        #expect(outcomes.allSatisfy { $0 == .acked })
        #expect(try await publisher.declareQueuePassive(queue).messageCount == UInt32(count))

        let consumer = try await Broker.connected(Broker.unique("consumer"), prefetch: 100,
                                                  consumes: [ConsumeSpec(queue: queue)])
        let inbox = DeliveryInbox(consumer.deliveries)
        var seen = Set<Int>()
        for _ in 0..<(count / 100) {
            for delivery in try await inbox.take(100) {
                let index = Self.index(of: delivery.body)
                #expect(delivery.body == Self.body(index, size: index == 0 ? 300_000 : 64))
                #expect(!delivery.redelivered)
                seen.insert(index)
                consumer.ack(delivery)
            }
        }
        #expect(seen == Set(0..<count))

        await consumer.cancelConsumers()
        try await publisher.deleteQueue(queue)
        await consumer.close()
        await publisher.close()
    }

    @Test func publishesBeyondTheConfirmWindowWaitTheirTurn() async throws {
        let queue = Broker.unique("window")
        let connection = try await Broker.connected(Broker.unique("window"), confirms: true, confirmWindow: 3)
        _ = try await connection.declareQueue(AMQPQueueDeclaration(name: queue, durable: false))
        let outcomes = try await bounded("300 publishes through a window of 3", .seconds(30)) {
            try await withThrowingTaskGroup(of: PublishOutcome.self) { group in
                for index in 0..<300 {
                    group.addTask { try await connection.publish(to: queue, Self.body(index)) }
                }
                return try await group.reduce(into: [PublishOutcome]()) { $0.append($1) }
            }
        }
        #expect(outcomes.count == 300 && outcomes.allSatisfy { $0 == .acked })
        #expect(try await connection.declareQueuePassive(queue).messageCount == 300)
        try await connection.deleteQueue(queue)
        await connection.close()
    }

    @Test func mandatoryUnroutablePublishIsReturnedAndTheNextPublishStillAcks() async throws {
        let exchange = Broker.unique("unbound")
        let queue = Broker.unique("routable")
        let connection = try await Broker.connected(Broker.unique("mandatory"), confirms: true)
        try await connection.declare(AMQPTopology(
            exchanges: [AMQPExchangeDeclaration(name: exchange, type: "direct", durable: false)],
            queues: [AMQPQueueDeclaration(name: queue, durable: false)]))

        let returned = try await bounded("mandatory publish") {
            try await connection.publish(AMQPMessage(exchange: exchange, routingKey: "nowhere", body: [0, 1, 2],
                                                     mandatory: true))
        }
        guard case .returned(let code, let text) = returned else {
            Issue.record("expected .returned, got \(returned)")
            return
        }
        #expect(code == 312)
        #expect(text == "NO_ROUTE")

        let next = try await bounded("publish after a return") { try await connection.publish(to: queue, [9]) }
        #expect(next == .acked)

        // Routable and unroutable mandatory publishes in one window: each gets its own outcome.
        let mixed = try await bounded("mixed mandatory publishes") {
            try await withThrowingTaskGroup(of: (Int, PublishOutcome).self) { group in
                for index in 0..<40 {
                    group.addTask {
                        let routable = index % 2 == 0
                        let outcome = try await connection.publish(AMQPMessage(
                            exchange: routable ? "" : exchange, routingKey: routable ? queue : "nowhere",
                            body: Self.body(index), mandatory: true))
                        return (index, outcome)
                    }
                }
                return try await group.reduce(into: [Int: PublishOutcome]()) { $0[$1.0] = $1.1 }
            }
        }
        for (index, outcome) in mixed {
            if index % 2 == 0 {
                #expect(outcome == .acked, "publish \(index)")
            } else {
                #expect(outcome == .returned(replyCode: 312, replyText: "NO_ROUTE"), "publish \(index)")
            }
        }
        #expect(try await connection.declareQueuePassive(queue).messageCount == 21)

        try await connection.deleteQueue(queue)
        try await connection.deleteExchange(exchange)
        await connection.close()
    }

    @Test func aConfirmThatDoesNotComeInTimeIsAnError() async throws {
        // A deadline of zero has passed before the broker can answer: the publish fails with
        // confirmTimeout instead of waiting (the ingress turns that into 503). The connection
        // stays usable, and a late confirm resolves nothing.
        let strict = AMQPConnection(configuration: AMQPConfiguration(url: Broker.url, connectionName: Broker.unique("deadline"),
                                                                     confirms: true, confirmTimeout: .zero), logger: Broker.logger)
        try await strict.waitUntilConnected(timeout: .seconds(10))
        let queue = Broker.unique("deadline")
        _ = try await strict.declareQueue(AMQPQueueDeclaration(name: queue, durable: false, exclusive: false, autoDelete: true))
        await #expect(throws: AMQPError.confirmTimeout) { _ = try await strict.publish(to: queue, Self.body(1)) }
        await #expect(throws: AMQPError.confirmTimeout) { _ = try await strict.publish(to: queue, Self.body(2)) }
        #expect(try await eventually { try await strict.declareQueuePassive(queue).messageCount == 2 },
                "the broker took both: a timeout says only that no confirm came in time")
        try await strict.deleteQueue(queue)
        await strict.close()
    }

    @Test func propertiesAndHeadersRoundTrip() async throws {
        let queue = Broker.unique("properties")
        let connection = try await Broker.connected(Broker.unique("properties"), confirms: true)
        _ = try await connection.declareQueue(AMQPQueueDeclaration(name: queue, durable: false))

        let properties = AMQPProperties(
            contentType: "application/cloudevents+json", persistent: true, messageId: "msg-1",
            type: "payment.create", correlationId: "corr-1", replyTo: "payfleet.replies",
            timestamp: Date(timeIntervalSince1970: 1_700_000_000), expiration: "60000", appId: "payfleet-tests",
            userId: try AMQPURL(TestEnvironment.amqpURL).user,
            headers: [
                "string": "héllo", "int": .int(-42), "big": .int(Int64.max), "bool": true, "double": 2.5,
                "void": .void,
                "nested": .table(["inner": .table(["deep": "yes", "n": 7]), "list": .array([1, "two", false])]),
                "empty": .table([:]), "emptyList": .array([]),
            ])
        #expect(try await connection.publish(to: queue, Self.body(3), properties: properties) == .acked)

        let delivery = try #require(try await connection.get(queue: queue, noAck: false))
        #expect(delivery.body == Self.body(3))
        #expect(delivery.properties == properties)
        #expect(delivery.routingKey == queue)
        #expect(delivery.exchange == "")
        connection.ack(delivery)

        // Defaults survive too: no optional property set, transient, no headers; the connection
        // stamps its user, so a consumer can tell who sent it.
        #expect(try await connection.publish(to: queue, []) == .acked)
        let plain = try #require(try await connection.get(queue: queue, noAck: true))
        #expect(plain.body.isEmpty)
        #expect(plain.properties == AMQPProperties(userId: try AMQPURL(TestEnvironment.amqpURL).user))
        #expect(try await connection.get(queue: queue, noAck: true) == nil)

        try await connection.deleteQueue(queue)
        await connection.close()
    }

    @Test func rejectDeadLettersOrRedelivers() async throws {
        let dlx = Broker.unique("dlx")
        let dlq = Broker.unique("dlq")
        let queue = Broker.unique("work")
        let admin = try await Broker.connected(Broker.unique("dlx-admin"), confirms: true)
        try await admin.declare(AMQPTopology(
            exchanges: [AMQPExchangeDeclaration(name: dlx, type: "fanout", durable: false)],
            queues: [AMQPQueueDeclaration(name: dlq, durable: false),
                     AMQPQueueDeclaration(name: queue, durable: false, arguments: ["x-dead-letter-exchange": .string(dlx)])],
            bindings: [AMQPBinding(source: dlx, destination: dlq)]))

        let consumer = try await Broker.connected(Broker.unique("dlx-consumer"), prefetch: 10,
                                                  consumes: [ConsumeSpec(queue: queue)])
        let inbox = DeliveryInbox(consumer.deliveries)

        #expect(try await admin.publish(to: queue, Array("dead".utf8)) == .acked)
        let first = try #require(try await inbox.take(1).first)
        consumer.reject(first, requeue: false)
        let dead = try await eventually("dead letter in \(dlq)") {
            guard let delivery = try await admin.get(queue: dlq, noAck: true) else { throw TestFailure("not yet") }
            return delivery
        }
        #expect(dead.body == Array("dead".utf8))
        guard case .array(let deaths)? = dead.properties.headers["x-death"],
              case .table(let death)? = deaths.first else {
            Issue.record("no x-death header: \(dead.properties.headers)")
            return
        }
        #expect(death["reason"] == .string("rejected"))
        #expect(death["queue"] == .string(queue))

        #expect(try await admin.publish(to: queue, Array("again".utf8)) == .acked)
        let second = try #require(try await inbox.take(1).first)
        #expect(!second.redelivered)
        consumer.reject(second, requeue: true)
        let redelivered = try #require(try await inbox.take(1).first)
        #expect(redelivered.body == Array("again".utf8))
        #expect(redelivered.redelivered)
        consumer.ack(redelivered)

        await consumer.cancelConsumers()
        #expect(try await admin.declareQueuePassive(dlq).messageCount == 0)
        try await admin.deleteQueue(queue)
        try await admin.deleteQueue(dlq)
        try await admin.deleteExchange(dlx)
        await consumer.close()
        await admin.close()
    }

    @Test func channelErrorFailsOneCallAndTheConnectionCarriesOn() async throws {
        let queue = Broker.unique("precondition")
        let consumed = Broker.unique("survivor")
        let connection = try await Broker.connected(Broker.unique("channel-error"), confirms: true, prefetch: 5)
        _ = try await connection.declareQueue(AMQPQueueDeclaration(name: queue, durable: false,
                                                                   arguments: ["x-max-length": 10]))
        _ = try await connection.declareQueue(AMQPQueueDeclaration(name: consumed, durable: false))
        _ = try await connection.consume(ConsumeSpec(queue: consumed))
        let inbox = DeliveryInbox(connection.deliveries)
        let generation = connection.generation

        await #expect(throws: AMQPError.self) {
            do {
                _ = try await connection.declareQueue(AMQPQueueDeclaration(name: queue, durable: false,
                                                                           arguments: ["x-max-length": 20]))
            } catch AMQPError.channelClosed(let code, let text) {
                #expect(code == 406)
                #expect(text.contains("PRECONDITION_FAILED"))
                throw AMQPError.channelClosed(code: code, text: text)
            }
        }
        #expect(connection.generation > generation)

        // The same connection publishes (with confirms) and consumes again.
        #expect(try await connection.publish(to: queue, [1, 2, 3]) == .acked)
        #expect(try await connection.declareQueuePassive(queue).messageCount == 1)
        #expect(try await connection.publish(to: consumed, [4]) == .acked)
        let delivery = try #require(try await inbox.take(1).first)
        #expect(delivery.body == [4])
        #expect(delivery.generation == connection.generation)
        connection.ack(delivery)

        // A passive declare of a missing queue is a 404 channel error, also survived.
        await #expect(throws: AMQPError.channelClosed(
            code: 404, text: "NOT_FOUND - no queue '\(queue).missing' in vhost '\(Broker.url.vhost)'")) {
            _ = try await connection.declareQueuePassive("\(queue).missing")
        }
        #expect(try await connection.publish(to: queue, [5]) == .acked)
        #expect(try await connection.declareQueuePassive(queue).messageCount == 2)

        // Publishing to a missing exchange closes the channel asynchronously (404): that
        // publish's fate is unknown to the caller, and the next one works again.
        await #expect(throws: AMQPError.self) {
            _ = try await connection.publish(AMQPMessage(exchange: "\(queue).no-such-exchange", routingKey: "x",
                                                         body: [6]))
        }
        #expect(try await connection.publish(to: queue, [7]) == .acked)
        #expect(try await connection.declareQueuePassive(queue).messageCount == 3)

        try await connection.deleteQueue(queue)
        try await connection.deleteQueue(consumed)
        await connection.close()
    }

    @Test func directReplyTo() async throws {
        let requests = Broker.unique("requests")
        let client = try await Broker.connected(Broker.unique("rpc-client"), confirms: true,
                                                consumes: [ConsumeSpec(queue: "amq.rabbitmq.reply-to", noAck: true)])
        let server = try await Broker.connected(Broker.unique("rpc-server"))
        _ = try await server.declareQueue(AMQPQueueDeclaration(name: requests, durable: false))
        _ = try await server.consume(ConsumeSpec(queue: requests))
        let serverInbox = DeliveryInbox(server.deliveries)
        let clientInbox = DeliveryInbox(client.deliveries)

        let sent = try await client.publish(to: requests, Array("ping".utf8), properties: AMQPProperties(
            messageId: "req-1", replyTo: "amq.rabbitmq.reply-to"))
        #expect(sent == .acked)

        let request = try #require(try await serverInbox.take(1).first)
        let replyTo = try #require(request.properties.replyTo)
        #expect(replyTo.hasPrefix("amq.rabbitmq.reply-to."))
        let replied = try await server.publish(AMQPMessage(
            exchange: "", routingKey: replyTo, body: Array("pong".utf8),
            properties: AMQPProperties(correlationId: request.properties.messageId)))
        #expect(replied == .acked)
        server.ack(request)

        let reply = try #require(try await clientInbox.take(1).first)
        #expect(reply.body == Array("pong".utf8))
        #expect(reply.properties.correlationId == "req-1")

        try await server.deleteQueue(requests)
        await server.close()
        await client.close()
    }

    @Test func reconnectsAfterTheBrokerDropsTheConnection() async throws {
        let queue = Broker.unique("reconnect")
        let publisherName = Broker.unique("reconnect-publisher")
        let consumerName = Broker.unique("reconnect-consumer")
        // Not auto-delete: the queue must outlive its consumer's connection.
        let topology = AMQPTopology(queues: [AMQPQueueDeclaration(name: queue, durable: false)])
        let publisher = try await Broker.connected(publisherName, confirms: true, topology: topology)
        let consumer = try await Broker.connected(consumerName, prefetch: 10, consumes: [ConsumeSpec(queue: queue)],
                                                  topology: topology)
        let inbox = DeliveryInbox(consumer.deliveries)

        for index in 0..<3 {
            #expect(try await publisher.publish(to: queue, Self.body(index)) == .acked)
        }
        let unacked = try await inbox.take(3)
        let oldGeneration = unacked[0].generation
        let publisherGeneration = publisher.generation
        #expect(unacked.allSatisfy { !$0.redelivered })

        #expect(try Broker.closeConnections(named: publisherName) == 1)
        #expect(try Broker.closeConnections(named: consumerName) == 1)

        // Acks of the old generation are dropped instead of closing the new channel.
        consumer.ack(unacked[0])

        // Publishes after the drop succeed once the publisher is back by itself.
        let outcome = try await eventually("publish after reconnect", .seconds(15)) {
            try await publisher.publish(to: queue, Self.body(3))
        }
        #expect(outcome == .acked)
        #expect(publisher.generation > publisherGeneration)

        // The consumer is back too: the three unacked messages come again (redelivered),
        // then the one published after the drop.
        let after = try await inbox.take(4, timeout: .seconds(15))
        #expect(after.allSatisfy { $0.generation > oldGeneration })
        let redelivered = after.filter(\.redelivered).map { Self.index(of: $0.body) }
        #expect(Set(redelivered) == [0, 1, 2])
        #expect(after.map { Self.index(of: $0.body) }.sorted() == [0, 1, 2, 3])
        for delivery in after { consumer.ack(delivery) }

        #expect(try await publisher.publish(to: queue, Self.body(4)) == .acked)
        let last = try #require(try await inbox.take(1).first)
        #expect(Self.index(of: last.body) == 4)
        consumer.ack(last)

        await consumer.cancelConsumers()
        try await eventually("queue drained") {
            let depth = try await publisher.declareQueuePassive(queue)
            if depth.messageCount != 0 { throw TestFailure("depth \(depth.messageCount)") }
        }
        try await publisher.deleteQueue(queue)
        await consumer.close()
        await publisher.close()
    }

    @Test func declaringTopologyTwiceIsHarmlessAndPassiveDeclareReadsTheDepth() async throws {
        let exchange = Broker.unique("topology")
        let queue = Broker.unique("topology")
        let topology = AMQPTopology(
            exchanges: [AMQPExchangeDeclaration(name: exchange, type: "topic", durable: false)],
            queues: [AMQPQueueDeclaration(name: queue, durable: false, arguments: ["x-max-priority": 5])],
            bindings: [AMQPBinding(source: exchange, destination: queue, routingKey: "payment.#")])
        let connection = try await Broker.connected(Broker.unique("topology"), confirms: true, topology: topology)
        try await connection.declare(topology)
        try await connection.declare(topology)

        for index in 0..<7 {
            let outcome = try await connection.publish(AMQPMessage(
                exchange: exchange, routingKey: "payment.create", body: Self.body(index), mandatory: true))
            #expect(outcome == .acked)
        }
        let unrouted = try await connection.publish(AMQPMessage(
            exchange: exchange, routingKey: "refund.create", body: [1], mandatory: true))
        #expect(unrouted == .returned(replyCode: 312, replyText: "NO_ROUTE"))

        let depth = try await connection.declareQueuePassive(queue)
        #expect(depth.messageCount == 7)
        #expect(depth.consumerCount == 0)
        let declared = try await connection.declareQueue(topology.queues[0])
        #expect(declared.name == queue)
        #expect(declared.messageCount == 7)

        try await connection.deleteQueue(queue)
        try await connection.deleteExchange(exchange)
        await connection.close()
    }

    @Test func serverNamedQueue() async throws {
        let connection = try await Broker.connected(Broker.unique("server-named"))
        let declared = try await connection.declareQueue(AMQPQueueDeclaration(name: "", durable: false,
                                                                              exclusive: true, autoDelete: true))
        #expect(declared.name.hasPrefix("amq.gen-"))
        #expect(declared.messageCount == 0)
        await connection.close()
    }

    @Test func idleConnectionSurvivesOnHeartbeats() async throws {
        // The broker closes a connection that misses two heartbeats; with a 1 s heartbeat
        // and 5 s of silence that would have happened without heartbeats being sent.
        let connection = try await Broker.connected(Broker.unique("heartbeat"), confirms: true, heartbeatSeconds: 1)
        let generation = connection.generation
        try await Task.sleep(for: .seconds(5))
        #expect(connection.isConnected)
        #expect(connection.generation == generation)
        let queue = Broker.unique("heartbeat")
        _ = try await connection.declareQueue(AMQPQueueDeclaration(name: queue, durable: false, autoDelete: true))
        #expect(try await connection.publish(to: queue, [1]) == .acked)
        #expect(connection.generation == generation)
        try await connection.deleteQueue(queue)
        await connection.close()
    }

    @Test func idleConnectionSurvivesMoreThanAMinuteWithTheDefaultHeartbeat() async throws {
        let connection = try await Broker.connected(Broker.unique("idle"), confirms: true)
        let generation = connection.generation
        try await Task.sleep(for: .seconds(65))
        #expect(connection.isConnected)
        #expect(connection.generation == generation)
        let queue = Broker.unique("idle")
        _ = try await connection.declareQueue(AMQPQueueDeclaration(name: queue, durable: false, autoDelete: true))
        #expect(try await connection.publish(to: queue, [1]) == .acked)
        #expect(connection.generation == generation)
        try await connection.deleteQueue(queue)
        await connection.close()
    }

    /// Restarts the broker: runs alone, in deploy/local/test.sh's chaos phase.
    @Test(.enabled(if: RabbitMQControl.chaosTestsEnabled, "the chaos phase of deploy/local/test.sh (PAYFLEET_CHAOS_TESTS=1)"))
    func chaosSurvivesABrokerRestart() async throws {
        let queue = Broker.unique("restart")
        let topology = AMQPTopology(queues: [AMQPQueueDeclaration(name: queue, durable: true)])
        let publisher = try await Broker.connected(Broker.unique("restart-publisher"), confirms: true,
                                                   topology: topology)
        let consumer = try await Broker.connected(Broker.unique("restart-consumer"), prefetch: 10,
                                                  consumes: [ConsumeSpec(queue: queue)], topology: topology)
        let inbox = DeliveryInbox(consumer.deliveries)
        let persistent = AMQPProperties(persistent: true)
        #expect(try await publisher.publish(to: queue, Self.body(0), properties: persistent) == .acked)
        let before = try await inbox.take(1)

        _ = try Broker.rabbitmqctl(["stop_app"])
        _ = try Broker.rabbitmqctl(["start_app"])

        let outcome = try await eventually("publish after restart", .seconds(30)) {
            try await publisher.publish(to: queue, Self.body(1), properties: persistent)
        }
        #expect(outcome == .acked)
        let after = try await inbox.take(2, timeout: .seconds(30))
        #expect(after.allSatisfy { $0.generation > before[0].generation })
        #expect(Set(after.map { Self.index(of: $0.body) }) == [0, 1])
        for delivery in after { consumer.ack(delivery) }
        await consumer.cancelConsumers()
        try await publisher.deleteQueue(queue)
        await consumer.close()
        await publisher.close()
    }

    @Test func unreachableBrokerFailsFastAndCloseEndsEverything() async throws {
        var url = Broker.url
        url.port = 1  // nothing listens there
        let connection = AMQPConnection(configuration: AMQPConfiguration(url: url, connectionName: "unreachable"),
                                        logger: Logger(label: "AMQPTests.unreachable"))
        await #expect(throws: AMQPError.timeout) { try await connection.waitUntilConnected(timeout: .milliseconds(300)) }
        #expect(!connection.isConnected)
        await #expect(throws: AMQPError.notConnected) { try await connection.publish(to: "q", [1]) }
        await #expect(throws: AMQPError.notConnected) { try await connection.declareQueuePassive("q") }

        await connection.close()
        await #expect(throws: AMQPError.closed) { try await connection.publish(to: "q", [1]) }
        await #expect(throws: AMQPError.closed) { try await connection.waitUntilConnected(timeout: .seconds(1)) }
        var iterator = connection.deliveries.makeAsyncIterator()
        #expect(await iterator.next() == nil)
    }
}
