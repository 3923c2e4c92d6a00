/// A Lua script run with `RedisClient.eval`. Its identity is its source text: the client loads
/// it once (`SCRIPT LOAD`), caches the SHA1 the server returns, and runs it by `EVALSHA`.
public struct RedisScript: Sendable, Hashable {
    public let source: String

    public init(_ source: String) {
        self.source = source
    }
}

/// One run of a script, for `RedisClient.eval(_:)`, which sends several in one round trip.
public struct RedisScriptCall: Sendable {
    public let script: RedisScript
    public let keys: [String]
    public let args: [String]

    public init(_ script: RedisScript, keys: [String], args: [String]) {
        self.script = script
        self.keys = keys
        self.args = args
    }
}
