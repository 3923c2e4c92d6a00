/// One Redis reply, as RESP2 types it. Bulk strings are bytes: Redis is binary safe.
public enum RedisValue: Sendable, Equatable, Hashable {
    case bulk([UInt8])
    case status(String)
    case integer(Int64)
    case array([RedisValue])
    case null
    /// Only seen inside `pipeline` results and nested arrays (e.g. `EXEC`); a command's own
    /// error reply is thrown as `RedisError`.
    case error(String)

    /// A bulk or status reply as text; nil for other kinds and for bytes that are not UTF-8.
    public var string: String? {
        switch self {
        case .bulk(let bytes): return String(validating: bytes, as: UTF8.self)
        case .status(let text): return text
        default: return nil
        }
    }

    /// An integer reply, or a bulk / status reply whose text is an integer (as `GET` of a counter).
    public var int: Int64? {
        switch self {
        case .integer(let value): return value
        case .bulk, .status: return string.flatMap { Int64($0) }
        default: return nil
        }
    }

    public var array: [RedisValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    /// A bulk reply's bytes (a status reply's UTF-8).
    public var bytes: [UInt8]? {
        switch self {
        case .bulk(let bytes): return bytes
        case .status(let text): return Array(text.utf8)
        default: return nil
        }
    }

    public var isNull: Bool { self == .null }
}
