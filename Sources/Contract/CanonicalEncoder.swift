import Foundation

/// The encoder behind `CanonicalJSON.encode`: the text `JSONEncoder` writes with
/// `[.sortedKeys, .withoutEscapingSlashes]` and its default strategies, byte for byte, at a
/// fraction of the cost.
///
/// Why: `JSONEncoder` builds a tree of dictionaries (hashing every key), tries about twenty dynamic
/// casts on every value it wraps (`Date`, `Data`, `URL`, `Decimal`, fifteen array types), then sorts
/// and writes; it was 17% of the authorize worker's CPU in `perf`. This one builds a tree of arrays,
/// compares type identities instead of casting, and writes once.
///
/// What it does not handle itself it hands back to `JSONEncoder`, which then encodes the whole
/// value (`Unsupported`): `Data`, `URL` and `Decimal` (special cases of `JSONEncoder`),
/// non-finite floating-point numbers (`JSONEncoder` throws its own error, with the coding path),
/// and a key written twice in one object. `Date` needs nothing special: with the
/// default strategy `JSONEncoder` lets it encode itself too.
///
/// `CanonicalJSONTests` hold it to `JSONEncoder`'s output on every kind of value and on hostile
/// strings.
struct CanonicalEncoder {
    struct Unsupported: Error {}

    static func encode<T: Encodable>(_ value: T) throws -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(512)
        // A top-level value that encodes nothing is an error in JSONEncoder (not `{}`): hand it over.
        let top = try node(of: value, empty: nil)
        guard let top else { throw Unsupported() }
        try write(top, into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The node a value encodes to; inside a container, a value that encodes nothing is `{}`, as
    /// in `JSONEncoder`.
    static func node<T: Encodable>(of value: T) throws -> Node {
        try node(of: value, empty: .object(ObjectNode()))!
    }

    private static func node<T: Encodable>(of value: T, empty: Node?) throws -> Node? {
        if T.self == String.self { return .string(value as! String) }
        if T.self == Data.self || T.self == URL.self || T.self == Decimal.self { throw Unsupported() }
        let encoder = NodeEncoder()
        try value.encode(to: encoder)
        return encoder.node ?? empty
    }

    enum Node {
        case null
        case bool(Bool)
        /// A number's text, as `JSONEncoder` writes it.
        case number(String)
        case string(String)
        case object(ObjectNode)
        case array(ArrayNode)
        /// What a `superEncoder()` holds, read when written (`{}` if it holds nothing).
        case deferred(NodeEncoder)
    }

    /// Reference types, like `JSONEncoder`'s: a container is a struct the caller may copy, and a
    /// nested one is filled after it was added to its parent.
    final class ObjectNode {
        var keys: [String] = []
        var values: [Node] = []
    }

    final class ArrayNode {
        var items: [Node] = []
    }

    static func number<F: BinaryFloatingPoint & LosslessStringConvertible>(_ value: F) throws -> Node {
        .number(try numberText(value))
    }

    /// A floating-point number's text, as `JSONEncoder` writes it.
    static func numberText<F: BinaryFloatingPoint & LosslessStringConvertible>(_ value: F) throws -> String {
        guard value.isFinite else { throw Unsupported() }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        return text
    }

    // MARK: writing

    static func write(_ node: Node, into bytes: inout [UInt8]) throws {
        switch node {
        case .null: bytes.append(contentsOf: "null".utf8)
        case .bool(let value): bytes.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let text): bytes.append(contentsOf: text.utf8)
        case .string(let text): writeString(text, into: &bytes)
        case .deferred(let encoder): try write(encoder.node ?? .object(ObjectNode()), into: &bytes)
        case .array(let array):
            bytes.append(UInt8(ascii: "["))
            for (index, item) in array.items.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                try write(item, into: &bytes)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let object):
            // Keys in the order of their UTF-8 bytes, as JSONEncoder's `.sortedKeys` on Linux.
            let order = object.keys.indices.sorted { precedes(object.keys[$0], object.keys[$1]) }
            bytes.append(UInt8(ascii: "{"))
            for (position, index) in order.enumerated() {
                if position > 0 {
                    // A key written twice: JSONEncoder keeps one value (its dictionary's); hand it over.
                    if object.keys[order[position - 1]] == object.keys[index] { throw Unsupported() }
                    bytes.append(UInt8(ascii: ","))
                }
                writeString(object.keys[index], into: &bytes)
                bytes.append(UInt8(ascii: ":"))
                try write(object.values[index], into: &bytes)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    /// Whether `a` sorts before `b` by their UTF-8 bytes (`memcmp` on contiguous UTF-8).
    static func precedes(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { x in
            b.withUTF8 { y in
                let common = min(x.count, y.count)
                let order = common == 0 ? 0 : memcmp(x.baseAddress!, y.baseAddress!, common)
                return order != 0 ? order < 0 : x.count < y.count
            }
        }
    }

    /// A JSON string as JSONEncoder escapes it: `"` and `\`, the control characters (`\b \f \n
    /// \r \t`, the others as `\u00XX`); slashes and everything else as they are.
    static func writeString(_ text: String, into bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        var text = text
        let plain = text.withUTF8 { utf8 in
            // Most strings need no escape: copied at once.
            guard !utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else { return false }
            bytes.append(contentsOf: utf8)
            return true
        }
        if plain {
            bytes.append(UInt8(ascii: "\""))
            return
        }
        let hex = Array("0123456789abcdef".utf8)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(UInt8(ascii: "\\")); bytes.append(byte)
            case UInt8(ascii: "\\"): bytes.append(UInt8(ascii: "\\")); bytes.append(byte)
            case 0x08: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "b"))
            case 0x0C: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "f"))
            case 0x0A: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "n"))
            case 0x0D: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "r"))
            case 0x09: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "t"))
            case 0x00...0x1F:
                bytes.append(contentsOf: "\\u00".utf8)
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0xF)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}

// MARK: - the Encoder

/// Holds what one value encoded to. `codingPath` stays empty: nothing PayFleet encodes reads it,
/// and the errors that would cite it are `JSONEncoder`'s (`Unsupported` hands such values over).
final class NodeEncoder: Encoder {
    var node: CanonicalEncoder.Node?
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let object: CanonicalEncoder.ObjectNode
        if case .object(let existing)? = node {
            object = existing
        } else {
            object = CanonicalEncoder.ObjectNode()
            node = .object(object)
        }
        return KeyedEncodingContainer(KeyedContainer<Key>(object: object))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let array: CanonicalEncoder.ArrayNode
        if case .array(let existing)? = node {
            array = existing
        } else {
            array = CanonicalEncoder.ArrayNode()
            node = .array(array)
        }
        return UnkeyedContainer(array: array)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleValueContainer(encoder: self) }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let object: CanonicalEncoder.ObjectNode
    var codingPath: [any CodingKey] { [] }

    private func set(_ node: CanonicalEncoder.Node, _ key: Key) { set(node, key.stringValue) }

    private func set(_ node: CanonicalEncoder.Node, _ key: String) {
        object.keys.append(key)
        object.values.append(node)
    }

    mutating func encodeNil(forKey key: Key) throws { set(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { set(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { set(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { set(try CanonicalEncoder.number(value), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { set(try CanonicalEncoder.number(value), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { set(.number(String(value)), key) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { set(try CanonicalEncoder.node(of: value), key) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type,
                                                        forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let nested = CanonicalEncoder.ObjectNode()
        set(.object(nested), key)
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(object: nested))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = CanonicalEncoder.ArrayNode()
        set(.array(nested), key)
        return UnkeyedContainer(array: nested)
    }

    /// As `JSONEncoder`: under the key `super`.
    mutating func superEncoder() -> any Encoder {
        let encoder = NodeEncoder()
        set(.deferred(encoder), "super")
        return encoder
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let encoder = NodeEncoder()
        set(.deferred(encoder), key)
        return encoder
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let array: CanonicalEncoder.ArrayNode
    var codingPath: [any CodingKey] { [] }
    var count: Int { array.items.count }

    private func add(_ node: CanonicalEncoder.Node) { array.items.append(node) }

    mutating func encodeNil() throws { add(.null) }
    mutating func encode(_ value: Bool) throws { add(.bool(value)) }
    mutating func encode(_ value: String) throws { add(.string(value)) }
    mutating func encode(_ value: Double) throws { add(try CanonicalEncoder.number(value)) }
    mutating func encode(_ value: Float) throws { add(try CanonicalEncoder.number(value)) }
    mutating func encode(_ value: Int) throws { add(.number(String(value))) }
    mutating func encode(_ value: Int8) throws { add(.number(String(value))) }
    mutating func encode(_ value: Int16) throws { add(.number(String(value))) }
    mutating func encode(_ value: Int32) throws { add(.number(String(value))) }
    mutating func encode(_ value: Int64) throws { add(.number(String(value))) }
    mutating func encode(_ value: UInt) throws { add(.number(String(value))) }
    mutating func encode(_ value: UInt8) throws { add(.number(String(value))) }
    mutating func encode(_ value: UInt16) throws { add(.number(String(value))) }
    mutating func encode(_ value: UInt32) throws { add(.number(String(value))) }
    mutating func encode(_ value: UInt64) throws { add(.number(String(value))) }
    mutating func encode<T: Encodable>(_ value: T) throws { add(try CanonicalEncoder.node(of: value)) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let nested = CanonicalEncoder.ObjectNode()
        add(.object(nested))
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(object: nested))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let nested = CanonicalEncoder.ArrayNode()
        add(.array(nested))
        return UnkeyedContainer(array: nested)
    }

    mutating func superEncoder() -> any Encoder {
        let encoder = NodeEncoder()
        add(.deferred(encoder))
        return encoder
    }
}

private struct SingleValueContainer: SingleValueEncodingContainer {
    let encoder: NodeEncoder
    var codingPath: [any CodingKey] { [] }

    private func set(_ node: CanonicalEncoder.Node) throws {
        // JSONEncoder stops a second value with a precondition; here it is handed over instead.
        guard encoder.node == nil else { throw CanonicalEncoder.Unsupported() }
        encoder.node = node
    }

    mutating func encodeNil() throws { try set(.null) }
    mutating func encode(_ value: Bool) throws { try set(.bool(value)) }
    mutating func encode(_ value: String) throws { try set(.string(value)) }
    mutating func encode(_ value: Double) throws { try set(try CanonicalEncoder.number(value)) }
    mutating func encode(_ value: Float) throws { try set(try CanonicalEncoder.number(value)) }
    mutating func encode(_ value: Int) throws { try set(.number(String(value))) }
    mutating func encode(_ value: Int8) throws { try set(.number(String(value))) }
    mutating func encode(_ value: Int16) throws { try set(.number(String(value))) }
    mutating func encode(_ value: Int32) throws { try set(.number(String(value))) }
    mutating func encode(_ value: Int64) throws { try set(.number(String(value))) }
    mutating func encode(_ value: UInt) throws { try set(.number(String(value))) }
    mutating func encode(_ value: UInt8) throws { try set(.number(String(value))) }
    mutating func encode(_ value: UInt16) throws { try set(.number(String(value))) }
    mutating func encode(_ value: UInt32) throws { try set(.number(String(value))) }
    mutating func encode(_ value: UInt64) throws { try set(.number(String(value))) }
    mutating func encode<T: Encodable>(_ value: T) throws { try set(try CanonicalEncoder.node(of: value)) }
}
