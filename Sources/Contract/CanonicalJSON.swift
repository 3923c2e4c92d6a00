import Foundation

/// JSON as PayFleet writes it everywhere (stored rows, event bodies, request hashes): sorted keys
/// and unescaped slashes, so equal values give equal text.
public enum CanonicalJSON {
    public static func encode<T: Encodable>(_ value: T) throws -> String {
        do {
            // The types on every command's path write themselves (`CanonicalJSONWritable`).
            if let writable = value as? any CanonicalJSONWritable { return try CanonicalJSONWriter.text(of: writable) }
            return try CanonicalEncoder.encode(value)
        } catch is CanonicalEncoder.Unsupported {
            return try encodeWithJSONEncoder(value)
        }
    }

    /// The same text from Foundation's `JSONEncoder`: the definition `encode` is held to, and
    /// what encodes the values `encode` does not handle itself (see `CanonicalEncoder`).
    public static func encodeWithJSONEncoder<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    public static func decode<T: Decodable>(_ type: T.Type, from text: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }
}
