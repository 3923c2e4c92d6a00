import Foundation

/// W3C Trace Context (`traceparent`: `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), as
/// it travels from an HTTP request into a command's envelope and AMQP headers, and from a command
/// into every event and follow-up command it causes. Pure.
public enum TraceContext {
    /// `header` when it is a well-formed `traceparent` (version 00, ids not all zero), else nil: a
    /// malformed one from outside is dropped, never copied on.
    public static func valid(_ header: String) -> String? {
        let parts = header.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "00", parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
              parts.allSatisfy({ $0.allSatisfy { $0.isHexDigit && !$0.isUppercase } }),
              parts[1].contains(where: { $0 != "0" }), parts[2].contains(where: { $0 != "0" }) else { return nil }
        return header
    }

    /// The trace id of a valid `traceparent`.
    public static func traceId(_ header: String?) -> String? {
        guard let header, let valid = valid(header) else { return nil }
        return String(valid.split(separator: "-")[1])
    }

    /// A new trace, sampled: for a request that came without one.
    public static func new() -> String {
        "00-\(randomHex(16))-\(randomHex(8))-01"
    }

    /// The same trace with a new parent id (this hop's span).
    public static func child(of header: String) -> String {
        guard let id = traceId(header) else { return new() }
        return "00-\(id)-\(randomHex(8))-\(header.suffix(2))"
    }

    /// `bytes` random bytes in hex: eight from each draw of the system generator (a system call
    /// each; one per byte was 1.3% of the ingress's CPU).
    static func randomHex(_ bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        var random: [UInt8] = []
        random.reserveCapacity(bytes + 7)
        while random.count < bytes { withUnsafeBytes(of: generator.next()) { random.append(contentsOf: $0) } }
        return Hex.encode(random.prefix(bytes))
    }
}
