import Foundation

/// One exchange to declare. Decodes from a RabbitMQ definitions entry
/// (`name`, `type`, `durable`, `auto_delete`, `internal`, `arguments`; `vhost` ignored).
/// Missing keys default to: type `topic`, durable `true`, the other flags `false`,
/// no arguments.
public struct AMQPExchangeDeclaration: Sendable, Equatable, Decodable {
    public var name: String
    /// `topic`, `direct`, `fanout` or `headers`.
    public var type: String
    public var durable: Bool
    public var autoDelete: Bool
    public var `internal`: Bool
    public var arguments: AMQPTable

    public init(name: String, type: String = "topic", durable: Bool = true, autoDelete: Bool = false,
                internal: Bool = false, arguments: AMQPTable = [:]) {
        self.name = name
        self.type = type
        self.durable = durable
        self.autoDelete = autoDelete
        self.internal = `internal`
        self.arguments = arguments
    }

    private enum CodingKeys: String, CodingKey {
        case name, type, durable, autoDelete = "auto_delete", `internal`, arguments
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try c.decode(String.self, forKey: .name),
                  type: try c.decodeIfPresent(String.self, forKey: .type) ?? "topic",
                  durable: try c.decodeIfPresent(Bool.self, forKey: .durable) ?? true,
                  autoDelete: try c.decodeIfPresent(Bool.self, forKey: .autoDelete) ?? false,
                  internal: try c.decodeIfPresent(Bool.self, forKey: .internal) ?? false,
                  arguments: try c.decodeIfPresent(AMQPTable.self, forKey: .arguments) ?? [:])
    }
}

/// One queue to declare. Decodes from a RabbitMQ definitions entry
/// (`name`, `durable`, `exclusive`, `auto_delete`, `arguments`; `vhost` ignored).
/// Missing keys default to durable `true`, the other flags `false`, no arguments.
/// An empty name asks the broker to name the queue (`declareQueue` returns it).
public struct AMQPQueueDeclaration: Sendable, Equatable, Decodable {
    public var name: String
    public var durable: Bool
    public var exclusive: Bool
    public var autoDelete: Bool
    public var arguments: AMQPTable

    public init(name: String, durable: Bool = true, exclusive: Bool = false, autoDelete: Bool = false,
                arguments: AMQPTable = [:]) {
        self.name = name
        self.durable = durable
        self.exclusive = exclusive
        self.autoDelete = autoDelete
        self.arguments = arguments
    }

    private enum CodingKeys: String, CodingKey {
        case name, durable, exclusive, autoDelete = "auto_delete", arguments
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try c.decode(String.self, forKey: .name),
                  durable: try c.decodeIfPresent(Bool.self, forKey: .durable) ?? true,
                  exclusive: try c.decodeIfPresent(Bool.self, forKey: .exclusive) ?? false,
                  autoDelete: try c.decodeIfPresent(Bool.self, forKey: .autoDelete) ?? false,
                  arguments: try c.decodeIfPresent(AMQPTable.self, forKey: .arguments) ?? [:])
    }
}

/// A binding from an exchange (`source`) to a queue (`destination`). Decodes from a
/// RabbitMQ definitions entry (`source`, `destination`, `routing_key`, `arguments`).
/// Only queue destinations are supported; `AMQPTopology(definitionsJSON:)` skips
/// exchange-to-exchange bindings.
public struct AMQPBinding: Sendable, Equatable, Decodable {
    public var source: String
    public var destination: String
    public var routingKey: String
    public var arguments: AMQPTable

    public init(source: String, destination: String, routingKey: String = "", arguments: AMQPTable = [:]) {
        self.source = source
        self.destination = destination
        self.routingKey = routingKey
        self.arguments = arguments
    }

    private enum CodingKeys: String, CodingKey {
        case source, destination, routingKey = "routing_key", arguments
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(source: try c.decode(String.self, forKey: .source),
                  destination: try c.decode(String.self, forKey: .destination),
                  routingKey: try c.decodeIfPresent(String.self, forKey: .routingKey) ?? "",
                  arguments: try c.decodeIfPresent(AMQPTable.self, forKey: .arguments) ?? [:])
    }
}

/// Exchanges, queues and bindings that code declares (idempotently) before use.
///
/// Declared in order: exchanges, then queues, then bindings. The default exchange
/// (`""`) and the broker's `amq.*` exchanges exist already and are never declared.
/// Pure value, no I/O.
public struct AMQPTopology: Sendable, Equatable, Decodable {
    public var exchanges: [AMQPExchangeDeclaration]
    public var queues: [AMQPQueueDeclaration]
    public var bindings: [AMQPBinding]

    public init(exchanges: [AMQPExchangeDeclaration] = [], queues: [AMQPQueueDeclaration] = [],
                bindings: [AMQPBinding] = []) {
        self.exchanges = exchanges
        self.queues = queues
        self.bindings = bindings
    }

    private enum CodingKeys: String, CodingKey { case exchanges, queues, bindings }

    private struct DefinitionsBinding: Decodable {
        var binding: AMQPBinding
        var destinationType: String

        private enum CodingKeys: String, CodingKey { case destinationType = "destination_type" }

        init(from decoder: any Decoder) throws {
            binding = try AMQPBinding(from: decoder)
            destinationType = try decoder.container(keyedBy: CodingKeys.self)
                .decodeIfPresent(String.self, forKey: .destinationType) ?? "queue"
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            exchanges: try c.decodeIfPresent([AMQPExchangeDeclaration].self, forKey: .exchanges) ?? [],
            queues: try c.decodeIfPresent([AMQPQueueDeclaration].self, forKey: .queues) ?? [],
            bindings: (try c.decodeIfPresent([DefinitionsBinding].self, forKey: .bindings) ?? [])
                .filter { $0.destinationType == "queue" }
                .map(\.binding))
    }

    /// Parses a RabbitMQ definitions file (as `rabbitmqctl export_definitions` writes
    /// it). Reads `exchanges`, `queues` and queue `bindings`; ignores users, vhosts,
    /// permissions, policies, parameters and every entry's `vhost`. JSON arguments map
    /// integers to `.int`, floats to `.double`, strings, bools, objects and arrays to
    /// their `AMQPValue` cases. Throws the decoder's error for malformed documents.
    public init(definitionsJSON: [UInt8]) throws {
        self = try JSONDecoder().decode(AMQPTopology.self, from: Data(definitionsJSON))
    }
}
