import CLibPQ
import Foundation

/// Where and how to connect: parsed once from a URL or a libpq keyword string.
///
/// Accepts `postgres://user:pass@host:port/db?k=v` (`postgresql://` too; components are
/// percent-decoded, query keys are libpq keywords such as `sslmode` or `application_name`) and
/// `host=... port=... dbname=...` keyword strings. Parsing is libpq's own (`PQconninfoParse`), so
/// anything libpq accepts is accepted and anything else throws.
///
/// Defaults added unless given: `client_encoding=UTF8` (rows are decoded as UTF-8),
/// `connect_timeout=10` (a connect never waits forever), TCP keepalives (idle 30 s, then every
/// 10 s, 3 misses: a dead peer is noticed in about a minute), and in `options`: `DateStyle=ISO` (so
/// `PostgresRow.date(_:)` can read timestamps whatever the server's default is), and the session
/// timeouts `statement_timeout=60s`, `lock_timeout=10s`, `idle_in_transaction_session_timeout=60s`
/// (no statement, lock wait or forgotten transaction holds a connection forever), and `jit=off`
/// (every statement here is short; a plan whose estimate crossed `jit_above_cost` spent 40-60 ms
/// compiling to run in 1 ms: the limit sync's, measured). Settings given
/// in the URL's `options` come later and win; a session may change its own (`SET LOCAL`).
public struct PostgresConfiguration: Sendable, CustomStringConvertible {
    /// The libpq keywords and values, in libpq's order, defaults included.
    public private(set) var parameters: [(keyword: String, value: String)]

    /// Whether `PostgresConnection.batch` sends a transaction's statements as one pipeline (one
    /// network round trip). On unless the environment says `PAYFLEET_PG_PIPELINE=off`, a switch
    /// for comparing the two in a benchmark.
    public var pipelining = ProcessInfo.processInfo.environment["PAYFLEET_PG_PIPELINE"] != "off"

    public init(url: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &message) else {
            let text = message.map { String(cString: $0) } ?? "out of memory"
            if let message { PQfreemem(message) }
            throw PostgresError(message: "invalid connection string: " + text.trimmingTrailingNewlines)
        }
        defer { PQconninfoFree(options) }
        var parameters: [(keyword: String, value: String)] = []
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val {
                parameters.append((String(cString: keyword), String(cString: value)))
            }
            option += 1
        }
        self.parameters = parameters
        if self["client_encoding"] == nil { self["client_encoding"] = "UTF8" }
        if self["connect_timeout"] == nil { self["connect_timeout"] = "10" }
        for (keyword, value) in [("keepalives", "1"), ("keepalives_idle", "30"), ("keepalives_interval", "10"), ("keepalives_count", "3")]
        where self[keyword] == nil {
            self[keyword] = value
        }
        // Ours first: a setting the caller gave in `options` comes later and wins.
        self["options"] = Self.sessionDefaults + (self["options"].map { " " + $0 } ?? "")
    }

    static let sessionDefaults = "-c DateStyle=ISO -c statement_timeout=60s -c lock_timeout=10s -c idle_in_transaction_session_timeout=60s -c jit=off"

    /// A libpq keyword's value, e.g. `configuration["host"]`; set to change or add one.
    public subscript(keyword: String) -> String? {
        get { parameters.first { $0.keyword == keyword }?.value }
        set {
            parameters.removeAll { $0.keyword == keyword }
            if let newValue { parameters.append((keyword, newValue)) }
        }
    }

    /// The keyword string handed to `PQconnectdb`.
    public var conninfo: String {
        parameters.map { "\($0.keyword)=\(Self.quote($0.value))" }.joined(separator: " ")
    }

    /// `conninfo` with the password masked, for logs.
    public var description: String {
        parameters.map { "\($0.keyword)=\($0.keyword == "password" ? "***" : Self.quote($0.value))" }
            .joined(separator: " ")
    }

    private static func quote(_ value: String) -> String {
        var quoted = "'"
        for character in value {
            if character == "'" || character == "\\" { quoted.append("\\") }
            quoted.append(character)
        }
        return quoted + "'"
    }
}

extension String {
    var trimmingTrailingNewlines: String {
        var text = self
        while text.last == "\n" || text.last == "\r" { text.removeLast() }
        return text
    }
}
