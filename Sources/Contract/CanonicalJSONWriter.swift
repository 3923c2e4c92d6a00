/// A value that writes its own canonical JSON, without an `Encoder` or a tree of nodes: the
/// outcome event and what it carries (the payment, its routing decision, the order), encoded on
/// every command (`Codable` through `CanonicalEncoder` was 10% of the authorize worker's CPU).
///
/// An implementation writes exactly the keys and values its `Encodable` conformance writes, in
/// the canonical order (by their UTF-8 bytes), with the same `nil` handling (`field` writes `null`,
/// as an explicit `encode` does; `fieldIfPresent` leaves the key out, as a synthesized
/// conformance does). `CanonicalJSONTests` hold every implementation to `JSONEncoder`'s text; its
/// `Encodable` conformance stays the definition, and what nests it in another type still uses it.
public protocol CanonicalJSONWritable: Encodable {
    func writeCanonicalJSON(_ json: inout CanonicalJSONWriter) throws
}

/// Writes one JSON value, byte for byte as `CanonicalJSON.encode` would.
public struct CanonicalJSONWriter {
    var bytes: [UInt8] = []
    /// No member written yet in the object being written.
    private var first = true

    static func text(of value: any CanonicalJSONWritable) throws -> String {
        var writer = CanonicalJSONWriter()
        writer.bytes.reserveCapacity(1024)
        try value.writeCanonicalJSON(&writer)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    /// An object whose members `body` writes, in canonical key order.
    public mutating func object(_ body: (inout CanonicalJSONWriter) throws -> Void) rethrows {
        bytes.append(UInt8(ascii: "{"))
        let outer = first
        first = true
        try body(&self)
        first = outer
        bytes.append(UInt8(ascii: "}"))
    }

    /// A key: a literal that needs no escaping.
    private mutating func key(_ key: StaticString) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        first = false
        bytes.append(UInt8(ascii: "\""))
        key.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
    }

    private mutating func null() { bytes.append(contentsOf: "null".utf8) }

    public mutating func field(_ key: StaticString, _ value: String) {
        self.key(key)
        CanonicalEncoder.writeString(value, into: &bytes)
    }

    /// `null` when nil.
    public mutating func field(_ key: StaticString, _ value: String?) {
        self.key(key)
        if let value { CanonicalEncoder.writeString(value, into: &bytes) } else { null() }
    }

    /// Left out when nil.
    public mutating func fieldIfPresent(_ key: StaticString, _ value: String?) {
        if let value { field(key, value) }
    }

    // Integers by concrete type: a generic `BinaryInteger` across the module boundary would print
    // through the unspecialized generic path.
    public mutating func field(_ key: StaticString, _ value: Int64) {
        self.key(key)
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func field(_ key: StaticString, _ value: Int) { field(key, Int64(value)) }

    public mutating func field(_ key: StaticString, _ value: UInt64) {
        self.key(key)
        bytes.append(contentsOf: String(value).utf8)
    }

    /// Left out when nil.
    public mutating func fieldIfPresent(_ key: StaticString, _ value: Int64?) {
        if let value { field(key, value) }
    }

    /// Throws `Unsupported` (the whole value goes to `JSONEncoder`) when not finite.
    public mutating func field(_ key: StaticString, _ value: Double) throws {
        let text = try CanonicalEncoder.numberText(value)
        self.key(key)
        bytes.append(contentsOf: text.utf8)
    }

    public mutating func field<W: CanonicalJSONWritable>(_ key: StaticString, _ value: W) throws {
        self.key(key)
        try value.writeCanonicalJSON(&self)
    }

    /// `null` when nil.
    public mutating func field<W: CanonicalJSONWritable>(_ key: StaticString, _ value: W?) throws {
        self.key(key)
        if let value { try value.writeCanonicalJSON(&self) } else { null() }
    }

    public mutating func field<W: CanonicalJSONWritable>(_ key: StaticString, _ values: [W]) throws {
        self.key(key)
        try list(values, open: "[", close: "]") { json, value in try value.writeCanonicalJSON(&json) }
    }

    public mutating func field(_ key: StaticString, _ values: [String]) {
        self.key(key)
        list(values, open: "[", close: "]") { json, value in CanonicalEncoder.writeString(value, into: &json.bytes) }
    }

    /// An object of strings, its keys sorted as `CanonicalEncoder` sorts them.
    public mutating func field(_ key: StaticString, _ map: [String: String]) {
        self.key(key)
        list(map.sorted(by: { CanonicalEncoder.precedes($0.key, $1.key) }), open: "{", close: "}") { json, member in
            CanonicalEncoder.writeString(member.key, into: &json.bytes)
            json.bytes.append(UInt8(ascii: ":"))
            CanonicalEncoder.writeString(member.value, into: &json.bytes)
        }
    }

    /// `items` between `open` and `close`, separated by commas.
    private mutating func list<Items: Sequence>(_ items: Items, open: Unicode.Scalar, close: Unicode.Scalar,
                                                _ write: (inout CanonicalJSONWriter, Items.Element) throws -> Void) rethrows {
        bytes.append(UInt8(ascii: open))
        var separated = false
        for item in items {
            if separated { bytes.append(UInt8(ascii: ",")) }
            separated = true
            try write(&self, item)
        }
        bytes.append(UInt8(ascii: close))
    }
}

extension CloudEvent: CanonicalJSONWritable where Payload: CanonicalJSONWritable {
    /// As the synthesized conformance: every optional attribute left out when nil.
    public func writeCanonicalJSON(_ json: inout CanonicalJSONWriter) throws {
        try json.object { json in
            try json.field("data", data)
            json.fieldIfPresent("datacontenttype", datacontenttype)
            json.field("id", id)
            json.fieldIfPresent("idempotencykey", idempotencykey)
            json.fieldIfPresent("merchantid", merchantid)
            json.field("source", source)
            json.field("specversion", specversion)
            json.fieldIfPresent("time", time)
            json.fieldIfPresent("traceparent", traceparent)
            json.field("type", type)
        }
    }
}
