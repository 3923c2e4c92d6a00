/// How deep a JSON text nests, measured without parsing it: a decoder recursing through a
/// hostile `[[[[...` of a megabyte could exhaust its stack, so depth is checked first. Pure, O(n).
public enum JSONDepth {
    /// The most any command or request body may nest (PayFleet's deepest is 4).
    public static let limit = 32

    /// Whether `bytes` nests arrays and objects deeper than `limit` (brackets inside strings do not count).
    public static func exceeds<Bytes: Collection>(_ bytes: Bytes, limit: Int = JSONDepth.limit) -> Bool where Bytes.Element == UInt8 {
        // Called across modules the generic loop went through the collection's witness table for
        // every byte (1.2% of the authorize worker's CPU); contiguous bytes are scanned directly.
        if let exceeds = bytes.withContiguousStorageIfAvailable({ scan($0, limit: limit) }) { return exceeds }
        return scan(bytes, limit: limit)
    }

    private static func scan<Bytes: Collection>(_ bytes: Bytes, limit: Int) -> Bool where Bytes.Element == UInt8 {
        var depth = 0, inString = false, escaped = false
        for byte in bytes {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > limit { return true }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
        return false
    }
}
