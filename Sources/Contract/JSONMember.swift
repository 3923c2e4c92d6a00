/// Where a member's value lies in a JSON object's text, found without decoding it: a value that
/// is passed on as it is (an outcome event's `data`, already canonical JSON) need not be decoded
/// into `JSONValue` and encoded again, which costs ten times the scan. Pure, O(n).
public enum JSONMember {
    /// The byte range of the value of the top-level member `name` of the object `bytes`, or nil
    /// when `bytes` is not an object, has no such member, or is malformed where the scan went.
    /// A member name written with escapes is not matched (nil: decode instead). The value's own
    /// syntax is not validated; callers that need a valid document decode it too (JSONDecoder).
    public static func range(of name: String, in bytes: [UInt8]) -> Range<Int>? {
        let key = Array(name.utf8)
        var index = skipSpace(bytes, 0)
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
        index += 1
        while true {
            index = skipSpace(bytes, index)
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
            guard let keyEnd = stringEnd(bytes, index) else { return nil }
            let matches = bytes[(index + 1)..<(keyEnd - 1)].elementsEqual(key)
            index = skipSpace(bytes, keyEnd)
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
            let start = skipSpace(bytes, index + 1)
            guard let end = valueEnd(bytes, start) else { return nil }
            if matches { return start..<end }
            index = skipSpace(bytes, end)
            guard index < bytes.count, bytes[index] == UInt8(ascii: ",") else { return nil }
            index += 1
        }
    }

    static func skipSpace(_ bytes: [UInt8], _ from: Int) -> Int {
        var index = from
        while index < bytes.count, isSpace(bytes[index]) { index += 1 }
        return index
    }

    static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }

    /// Given the index of an opening quote, the index just past the closing one.
    static func stringEnd(_ bytes: [UInt8], _ open: Int) -> Int? {
        var index = open + 1
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\\"): index += 2
            case UInt8(ascii: "\""): return index + 1
            default: index += 1
            }
        }
        return nil
    }

    /// The index just past the value that starts at `start`.
    static func valueEnd(_ bytes: [UInt8], _ start: Int) -> Int? {
        guard start < bytes.count else { return nil }
        switch bytes[start] {
        case UInt8(ascii: "\""):
            return stringEnd(bytes, start)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0, index = start
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\""):
                    guard let end = stringEnd(bytes, index) else { return nil }
                    index = end
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return index + 1 }
                default: break
                }
                index += 1
            }
            return nil
        default:
            // A number, true, false or null: up to the next delimiter.
            var index = start
            while index < bytes.count, !isSpace(bytes[index]),
                  bytes[index] != UInt8(ascii: ","), bytes[index] != UInt8(ascii: "}"), bytes[index] != UInt8(ascii: "]") {
                index += 1
            }
            return index > start ? index : nil
        }
    }
}
