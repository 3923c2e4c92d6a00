import Contract
import Foundation
import Redis
import Synchronization

/// Cache-aside in Redis, shared by every replica (RULES "Caching"): read the cache; on a miss load
/// from PostgreSQL and fill it with a TTL; a write invalidates the entry at once, so it applies to
/// the very next read everywhere, not after the TTL.
///
/// Fills are guarded by a generation per entry: `invalidate` bumps it, and a fill that read the
/// generation before a concurrent write committed is dropped, so a slow reader can never put a
/// value the write replaced back into the cache for a whole TTL. An unreachable cache falls back to
/// the loader: the database stays the truth.
public struct CacheAside: Sendable {
    public let redis: RedisClient
    let decoded = DecodedValues()

    public init(redis: RedisClient) { self.redis = redis }

    /// `text` (an entry as read) decoded as JSON. Every payment reads the same few entries (its
    /// merchant, the risk rules), so the value decoded from the very same text is kept and reused:
    /// the read still goes to Redis each time (a write invalidates at once), only the decoding is
    /// saved (2.5% of the authorize worker's CPU, measured).
    public func decode<T: Decodable & Sendable>(_ type: T.Type, from text: String) throws -> T {
        if let value = decoded.value(for: text) as? T { return value }
        let value = try CanonicalJSON.decode(type, from: text)
        decoded.keep(value, for: text)
        return value
    }

    /// A TTL in seconds, drawn from a range so that entries filled together do not expire together.
    public struct TTL: Sendable, Equatable {
        public var range: ClosedRange<Int>
        public init(seconds: Int) { range = seconds...seconds }
        public init(_ range: ClosedRange<Int>) { self.range = range }
        public func draw() -> Int { Int.random(in: range) }

        /// RULES "Caching".
        public static let merchant = TTL(seconds: 3_600)
        public static let configuration = TTL(seconds: 300)
        public static let risk = TTL(600...1_800)
        public static let fx = TTL(seconds: 3_600)
    }

    /// An entry as read: its value (nil on a miss) and the generation a fill must match.
    public struct Read: Sendable {
        public let key: String
        public let value: String?
        let generation: String
    }

    static func generationKey(_ key: String) -> String { key + ":gen" }

    static let fillScript = RedisScript("""
        -- KEYS: the entry, its generation. ARGV: value, ttl, the generation read before loading.
        if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[3] then return 0 end
        redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
        return 1
        """)

    static let invalidateScript = RedisScript("""
        -- KEYS: pairs of entry and generation. ARGV: how long a generation is kept.
        for i = 1, #KEYS, 2 do
            redis.call('DEL', KEYS[i])
            redis.call('INCR', KEYS[i + 1])
            redis.call('EXPIRE', KEYS[i + 1], ARGV[1])
        end
        return #KEYS / 2
        """)

    /// Reads entries and their generations in one round trip. Nil when the cache is unreachable.
    public func read(_ keys: [String]) async -> [Read]? {
        guard !keys.isEmpty else { return [] }
        guard let values = try? await redis.command(["MGET"] + keys.flatMap { [$0, Self.generationKey($0)] }).array,
              values.count == keys.count * 2 else { return nil }
        return keys.indices.map { Read(key: keys[$0], value: values[2 * $0].string, generation: values[2 * $0 + 1].string ?? "0") }
    }

    /// Stores a value loaded after `read`, unless the entry was invalidated since. Best effort.
    public func fill(_ read: Read, with value: String, ttl: TTL) async {
        _ = try? await redis.eval(Self.fillScript, keys: [read.key, Self.generationKey(read.key)],
                                  args: [value, String(ttl.draw()), read.generation])
    }

    /// Stores several loaded values in one round trip (each guarded by its own generation).
    public func fill(_ entries: [(Read, String)], ttl: TTL) async {
        guard !entries.isEmpty else { return }
        _ = try? await redis.pipeline(entries.map { read, value in
            ["EVAL", Self.fillScript.source, "2", read.key, Self.generationKey(read.key), value, String(ttl.draw()), read.generation]
        })
    }

    /// One entry: from the cache, or else from `load` (then cached; nil is not cached).
    public func value(_ key: String, ttl: TTL, load: () async throws -> String?) async throws -> String? {
        try await value(from: await read([key])?.first, ttl: ttl, load: load)
    }

    /// One entry from a `read` already made (with others, in one round trip); nil when the cache
    /// was unreachable. A miss loads and fills as `value` does.
    public func value(from read: Read?, ttl: TTL, load: () async throws -> String?) async throws -> String? {
        if let cached = read?.value { return cached }
        guard let loaded = try await load() else { return nil }
        if let read { await fill(read, with: loaded, ttl: ttl) }
        return loaded
    }

    /// Drops entries after a write (call it after the write committed).
    public func invalidate(_ keys: [String]) async throws {
        guard !keys.isEmpty else { return }
        _ = try await redis.eval(Self.invalidateScript, keys: keys.flatMap { [$0, Self.generationKey($0)] },
                                 args: [String(7 * 24 * 3600)])
    }
}

/// The values decoded from the last few hundred entry texts, by text. A text always decodes to
/// the same value, so an entry found here needs no expiry; the table is emptied when full.
final class DecodedValues: Sendable {
    static let capacity = 512
    private let values = Mutex<[String: any Sendable]>([:])

    func value(for text: String) -> (any Sendable)? { values.withLock { $0[text] } }

    func keep(_ value: any Sendable, for text: String) {
        values.withLock { values in
            if values.count >= Self.capacity { values.removeAll(keepingCapacity: true) }
            values[text] = value
        }
    }
}
