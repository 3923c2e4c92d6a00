/// Lower-case hexadecimal text of bytes (hashes, ids, trace ids).
///
/// Why not `String(format: "%02x", byte)` per byte: that goes through Foundation's format parser
/// once per byte, and a command hashes several times; `perf` put it at 7% of the authorize
/// worker's CPU.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// The lowercase hex digit of `nibble` (0...15).
    static func digit(_ nibble: UInt8) -> UInt8 { digits[Int(nibble)] }

    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let bytes = Array(bytes)
        return String(unsafeUninitializedCapacity: bytes.count * 2) { buffer in
            for (index, byte) in bytes.enumerated() {
                buffer[2 * index] = digits[Int(byte >> 4)]
                buffer[2 * index + 1] = digits[Int(byte & 0x0F)]
            }
            return bytes.count * 2
        }
    }
}
