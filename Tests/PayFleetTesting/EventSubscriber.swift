import AMQP
import Foundation
import Synchronization

/// Subscribes to `payfleet.events` (or any exchange) like an integrator: an exclusive queue bound
/// with a routing-key pattern, collecting every delivery for the test to inspect.
public final class EventSubscriber: Sendable {
    public struct Received: Sendable {
        public let routingKey: String
        public let eventId: String
        public let type: String
        public let correlationId: String?
        public let body: [UInt8]
        public let headers: AMQPTable

        /// The body as a JSON object.
        public var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:]
        }
        public var data: [String: Any] { json["data"] as? [String: Any] ?? [:] }
    }

    let connection: AMQPConnection
    public let queue: String
    private final class Inbox: Sendable { let events = Mutex<[Received]>([]) }
    private let received = Inbox()
    private let pump: Task<Void, Never>

    public convenience init(exchange: String = "payfleet.events", bindingKey: String) async throws {
        try await self.init(exchange: exchange, bindingKeys: [bindingKey])
    }

    /// A merchant's payment outcomes: its payment, pre-authorization, sweep and rejection events,
    /// without the resources they move besides (`order.updated`).
    public static func outcomes(of merchantId: String) async throws -> EventSubscriber {
        try await EventSubscriber(bindingKeys: ["payment", "preauth", "command", "sweep"].map { "m.\(merchantId).\($0).#" })
    }

    public convenience init(exchange: String = "payfleet.events", bindingKeys: [String]) async throws {
        try await self.init(boundLike: bindingKeys.map { AMQPBinding(source: exchange, destination: "", routingKey: $0) })
    }

    /// A private queue bound as `bindings` say (their destinations aside): it receives a copy of
    /// what the broker routes by them, e.g. what a headers binding sends to a product's queue.
    public init(boundLike bindings: [AMQPBinding]) async throws {
        connection = try await TestEnvironment.amqp("test subscriber", confirms: false, prefetch: 500)
        let declared = try await connection.declareQueue(AMQPQueueDeclaration(name: "", durable: false, exclusive: true,
                                                                             autoDelete: true, arguments: [:]))
        queue = declared.name
        for var binding in bindings {
            binding.destination = queue
            try await connection.bind(binding)
        }
        _ = try await connection.consume(ConsumeSpec(queue: queue, noAck: true, exclusive: true))
        let connection = self.connection, received = self.received
        pump = Task {
            for await delivery in connection.deliveries {
                received.events.withLock {
                    $0.append(Received(routingKey: delivery.routingKey, eventId: delivery.properties.messageId ?? "",
                                       type: delivery.properties.type ?? "", correlationId: delivery.properties.correlationId,
                                       body: delivery.body, headers: delivery.properties.headers))
                }
            }
        }
    }

    public var events: [Received] { received.events.withLock { $0 } }

    /// Each event once, in arrival order, optionally of one type: delivery is at least once, and a
    /// duplicate repeats its event id (CONTRACT §2), so a subscriber dedupes on it.
    public static func distinct(_ events: [Received], type: String? = nil) -> [Received] {
        var seen: Set<String> = []
        return events.filter { (type == nil || $0.type == type) && seen.insert($0.eventId).inserted }
    }

    /// Waits until `predicate` holds for the events received so far.
    @discardableResult
    public func wait(timeout: Duration = .seconds(30), until predicate: ([Received]) -> Bool) async -> [Received] {
        _ = await eventually(timeout: timeout) { predicate(events) }
        return events
    }

    public func close() async {
        pump.cancel()
        await connection.close()
    }
}
