/// A parsed `amqp://user:pass@host:port/vhost` broker address.
///
/// Pure value; parsing does no I/O. User, password and vhost are percent-decoded
/// (`%2F` is `/`). Missing parts default to `guest`/`guest`, port 5672 and vhost `/`.
/// TLS (`amqps://`) is not supported and is rejected.
public struct AMQPURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String
    public var vhost: String

    public init(host: String = "127.0.0.1", port: Int = 5672, user: String = "guest",
                password: String = "guest", vhost: String = "/") {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.vhost = vhost
    }

    /// Parses an AMQP URI. Throws `AMQPError.invalidURL` when it is not one.
    public init(_ string: String) throws {
        let scheme = "amqp://"
        guard string.lowercased().hasPrefix(scheme) else {
            throw AMQPError.invalidURL("expected amqp://, got \(Self.redacted(string))")
        }
        var rest = Substring(string.dropFirst(scheme.count))
        if let query = rest.firstIndex(where: { $0 == "?" || $0 == "#" }) {
            rest = rest[..<query]
        }
        let authority: Substring
        let path: Substring?
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        } else {
            authority = rest
            path = nil
        }

        var user = "guest", password = "guest"
        var hostPort = authority
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            hostPort = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = try Self.decode(userInfo[..<colon], whole: string)
                password = try Self.decode(userInfo[userInfo.index(after: colon)...], whole: string)
            } else {
                user = try Self.decode(userInfo, whole: string)
            }
        }

        var host = hostPort
        var port = 5672
        if hostPort.hasPrefix("[") {
            // IPv6 literal: [::1]:5672
            guard let close = hostPort.firstIndex(of: "]") else {
                throw AMQPError.invalidURL("unterminated IPv6 host in \(Self.redacted(string))")
            }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") {
                port = try Self.port(after.dropFirst(), whole: string)
            } else if !after.isEmpty {
                throw AMQPError.invalidURL("bad host in \(Self.redacted(string))")
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = hostPort[..<colon]
            port = try Self.port(hostPort[hostPort.index(after: colon)...], whole: string)
        }
        guard !host.isEmpty else {
            throw AMQPError.invalidURL("missing host in \(Self.redacted(string))")
        }

        var vhost = "/"
        if let path, !path.isEmpty {
            vhost = try Self.decode(path, whole: string)
        }
        self.init(host: String(host), port: port, user: user, password: password, vhost: vhost)
    }

    /// The URL with the password replaced by `***`, safe to log.
    public var description: String {
        "amqp://\(user):***@\(host.contains(":") ? "[\(host)]" : host):\(port)/\(Self.encodeVhost(vhost))"
    }

    /// The whole URI, password included, to hand to whoever will connect with it.
    public var uriWithPassword: String {
        "amqp://\(Self.encodeVhost(user)):\(Self.encodeVhost(password))@\(host.contains(":") ? "[\(host)]" : host):\(port)/\(Self.encodeVhost(vhost))"
    }

    private static func port(_ text: Substring, whole: String) throws -> Int {
        guard let port = Int(text), (1...65535).contains(port) else {
            throw AMQPError.invalidURL("bad port '\(text)' in \(redacted(whole))")
        }
        return port
    }

    private static func decode(_ text: Substring, whole: String) throws -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    throw AMQPError.invalidURL("bad percent-escape in \(redacted(whole))")
                }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw AMQPError.invalidURL("percent-escape is not UTF-8 in \(redacted(whole))")
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func encodeVhost(_ vhost: String) -> String {
        var out = ""
        for byte in vhost.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                 UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }

    /// The input with anything between `://` and `@` masked, for error messages.
    private static func redacted(_ string: String) -> String {
        guard let schemeEnd = string.range(of: "://"), let at = string.lastIndex(of: "@"),
              at > schemeEnd.upperBound else { return string }
        return String(string[..<schemeEnd.upperBound]) + "***" + String(string[at...])
    }
}
