import Foundation

/// Where and how to connect to Redis, parsed from `redis://[[user]:password@]host[:port][/db]`.
///
/// Query parameters (seconds, fractions allowed): `connect_timeout` (default 5) bounds a connect;
/// `timeout` (default 30, `0` = none) bounds every reply: a command whose reply does not arrive in
/// time throws `RedisError.isConnection` and its connection is replaced. Raise `timeout` for
/// blocking commands such as `BLPOP` with longer waits. No TLS (`rediss://` is refused): hiredis
/// 0.14 as packaged has none.
public struct RedisConfiguration: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String?
    public var password: String?
    public var database: Int
    public var connectTimeout: Double
    /// nil: wait for replies without limit.
    public var commandTimeout: Double?

    public init(url: String) throws {
        guard let components = URLComponents(string: url), components.scheme?.lowercased() == "redis" else {
            throw RedisError(message: "not a redis:// URL: \(url)")
        }
        host = components.host.flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        port = components.port ?? 6379
        // URLComponents percent-decodes user and password.
        username = components.user.flatMap { $0.isEmpty ? nil : $0 }
        password = components.password
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        if path.isEmpty {
            database = 0
        } else if let database = Int(path), database >= 0 {
            self.database = database
        } else {
            throw RedisError(message: "redis URL database must be a number: \(path)")
        }
        connectTimeout = 5
        commandTimeout = 30
        for item in components.queryItems ?? [] {
            guard let text = item.value, let seconds = Double(text), seconds >= 0 else {
                throw RedisError(message: "redis URL parameter \(item.name) needs seconds")
            }
            switch item.name {
            case "connect_timeout": connectTimeout = seconds
            case "timeout": commandTimeout = seconds == 0 ? nil : seconds
            default: throw RedisError(message: "unknown redis URL parameter \(item.name)")
            }
        }
    }

    public var description: String {
        let auth = password == nil ? "" : "\(username ?? ""):***@"
        return "redis://\(auth)\(host):\(port)/\(database)"
    }
}
