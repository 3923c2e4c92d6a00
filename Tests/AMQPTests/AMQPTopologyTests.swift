import AMQP
import Foundation
import Testing

@Suite struct AMQPTopologyTests {
    static let definitions = #"""
    {
      "rabbit_version": "3.10.8",
      "users": [{"name": "payfleet", "password_hash": "x", "tags": []}],
      "vhosts": [{"name": "/"}],
      "permissions": [{"user": "payfleet", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
      "policies": [{"vhost": "/", "name": "p", "pattern": ".*", "definition": {"max-length": 10}}],
      "exchanges": [
        {"name": "payfleet.commands", "vhost": "/", "type": "topic", "durable": true, "auto_delete": false,
         "internal": false, "arguments": {}},
        {"name": "payfleet.match", "vhost": "/", "type": "headers", "durable": true, "auto_delete": false,
         "internal": true, "arguments": {"alternate-exchange": "payfleet.unrouted"}}
      ],
      "queues": [
        {"name": "payfleet.authorize", "vhost": "/", "durable": true, "auto_delete": false,
         "arguments": {"x-queue-type": "quorum", "x-delivery-limit": 5,
                       "x-dead-letter-exchange": "payfleet.dlx", "x-dead-letter-strategy": "at-least-once",
                       "x-overflow": "reject-publish", "x-single-active-consumer": true,
                       "x-ratio": 0.5, "x-list": [1, "two", {"three": 3}]}}
      ],
      "bindings": [
        {"source": "payfleet.commands", "vhost": "/", "destination": "payfleet.authorize",
         "destination_type": "queue", "routing_key": "payment.create", "arguments": {}},
        {"source": "payfleet.match", "vhost": "/", "destination": "payfleet.authorize",
         "destination_type": "queue", "routing_key": "",
         "arguments": {"x-match": "all", "type": "payment.create", "priority": 2}},
        {"source": "payfleet.commands", "vhost": "/", "destination": "payfleet.match",
         "destination_type": "exchange", "routing_key": "#", "arguments": {}}
      ]
    }
    """#

    @Test func parsesADefinitionsDocument() throws {
        let topology = try AMQPTopology(definitionsJSON: Array(Self.definitions.utf8))

        #expect(topology.exchanges == [
            AMQPExchangeDeclaration(name: "payfleet.commands", type: "topic", durable: true, autoDelete: false,
                                    internal: false, arguments: [:]),
            AMQPExchangeDeclaration(name: "payfleet.match", type: "headers", durable: true, autoDelete: false,
                                    internal: true, arguments: ["alternate-exchange": .string("payfleet.unrouted")]),
        ])

        #expect(topology.queues.count == 1)
        let queue = try #require(topology.queues.first)
        #expect(queue.name == "payfleet.authorize")
        #expect(queue.durable && !queue.autoDelete && !queue.exclusive)
        #expect(queue.arguments["x-queue-type"] == .string("quorum"))
        #expect(queue.arguments["x-delivery-limit"] == .int(5))
        #expect(queue.arguments["x-dead-letter-exchange"] == .string("payfleet.dlx"))
        #expect(queue.arguments["x-single-active-consumer"] == .bool(true))
        #expect(queue.arguments["x-ratio"] == .double(0.5))
        #expect(queue.arguments["x-list"] == .array([.int(1), .string("two"), .table(["three": .int(3)])]))

        // The exchange-to-exchange binding is not a queue binding and is skipped.
        #expect(topology.bindings == [
            AMQPBinding(source: "payfleet.commands", destination: "payfleet.authorize", routingKey: "payment.create"),
            AMQPBinding(source: "payfleet.match", destination: "payfleet.authorize", routingKey: "",
                        arguments: ["x-match": .string("all"), "type": .string("payment.create"), "priority": .int(2)]),
        ])
    }

    @Test func toleratesMissingSections() throws {
        let topology = try AMQPTopology(definitionsJSON: Array(#"{"queues": [{"name": "q"}]}"#.utf8))
        #expect(topology.exchanges.isEmpty && topology.bindings.isEmpty)
        #expect(topology.queues == [AMQPQueueDeclaration(name: "q", durable: true)])
    }

    @Test func rejectsMalformedJSON() {
        #expect(throws: (any Error).self) { try AMQPTopology(definitionsJSON: Array("{".utf8)) }
        #expect(throws: (any Error).self) { try AMQPTopology(definitionsJSON: Array(#"{"queues": [{}]}"#.utf8)) }
    }
}
