/// A value in an AMQP field table (message headers, queue and exchange arguments).
///
/// Integers of every wire width decode to `.int`; they are sent as signed 64-bit
/// (`l`), which RabbitMQ accepts for all its `x-` arguments. Decimals and floats
/// decode to `.double`, byte strings to `.string`. Pure value, no I/O.
///
/// Codable as plain JSON (`1` -> `.int`, `1.5` -> `.double`, `"a"` -> `.string`,
/// `true` -> `.bool`, `null` -> `.void`, objects and arrays recursively), as RabbitMQ
/// definitions files write arguments.
public indirect enum AMQPValue: Sendable, Equatable, Hashable {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case double(Double)
    case table(AMQPTable)
    case array([AMQPValue])
    case void
}

/// An AMQP field table: header or argument names to values.
public typealias AMQPTable = [String: AMQPValue]

extension AMQPValue: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .void
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([String: AMQPValue].self) {
            self = .table(value)
        } else if let value = try? container.decode([AMQPValue].self) {
            self = .array(value)
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an AMQP field value")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .table(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .void: try container.encodeNil()
        }
    }
}

extension AMQPValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
}
