/// Any JSON value, decoded losslessly enough to validate field by field and report precise errors
/// (a wrong type is an error on that field, not a decoding failure of the whole document).
public enum JSONValue: Sendable, Equatable, Codable {
    case null
    case bool(Bool)
    /// A number that is an integer within `Int64`.
    case integer(Int64)
    /// An integer above `Int64.max` that fits `UInt64` (a routing seed), kept exact.
    case unsignedInteger(UInt64)
    /// Any other number (fractional, or integral beyond both).
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Each wrong guess costs a thrown `DecodingError` with its coding path, so the common kinds
    /// are tried first: strings, integers, then objects. The kinds never overlap (`JSONDecoder`
    /// decodes no type from another's JSON), and among numbers `Int64` still comes before `UInt64`
    /// and `Double`, so the order changes the cost, not the value (`JSONValueTests`).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode(Int64.self) { self = .integer(value) }
        else if let value = try? container.decode([String: JSONValue].self) { self = .object(value) }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else if let value = try? container.decode(UInt64.self) { self = .unsignedInteger(value) }
        else { self = .number(try container.decode(Double.self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .unsignedInteger(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The JSON type name, for error messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .integer, .unsignedInteger, .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}
