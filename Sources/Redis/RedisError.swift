/// An error reply from the server (`ERR ...`, `WRONGTYPE ...`, a script's error), a lost or
/// refused connection, or misuse (a closed client, a bad URL).
public struct RedisError: Error, Sendable, CustomStringConvertible {
    /// The server's error text (e.g. `WRONGTYPE Operation against a key ...`) or hiredis' / ours.
    public let message: String
    /// The connection failed, timed out or was closed: whether the command ran is unknown.
    /// The next command reconnects. Retrying is the caller's decision (safe only if idempotent).
    public let isConnection: Bool

    init(message: String, isConnection: Bool = false) {
        self.message = message
        self.isConnection = isConnection
    }

    /// The server does not have the script (`EVALSHA` after a restart or `SCRIPT FLUSH`).
    public var isNoScript: Bool { message.hasPrefix("NOSCRIPT") }

    public var description: String {
        "RedisError: \(message)" + (isConnection ? " [connection]" : "")
    }
}
