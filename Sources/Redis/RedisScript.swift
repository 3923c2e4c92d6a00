/// A Lua script run with `RedisClient.eval`. Its identity is its source text: the client loads
/// it once (`SCRIPT LOAD`), caches the SHA1 the server returns, and runs it by `EVALSHA`.
public struct RedisScript: Sendable, Hashable {
    public let source: String

    public init(_ source: String) {
        self.source = source
    }
}
