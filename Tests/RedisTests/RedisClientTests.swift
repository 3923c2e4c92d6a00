import Foundation
import Logging
import Redis
import Testing

/// Integration tests against a real Redis (`PAYFLEET_REDIS_URL`). Each test uses keys under a
/// random prefix of its own, so the tests run in parallel and on a shared server.
@Suite("Redis client", .timeLimit(.minutes(2)))
struct RedisClientTests {
    static let url = ProcessInfo.processInfo.environment["PAYFLEET_REDIS_URL"] ?? "redis://127.0.0.1:6380/0"

    static func makeClient(poolSize: Int = 4, url: String = url, logs: LogRecorder? = nil) throws -> RedisClient {
        var logger = Logger(label: "RedisTests") { label in
            logs.map { RecordingLogHandler(recorder: $0) as any LogHandler } ?? StreamLogHandler.standardError(label: label)
        }
        logger.logLevel = logs == nil ? .error : .debug
        return try RedisClient(url: url, poolSize: poolSize, logger: logger)
    }

    static func prefix() -> String { "pf:test:\(UUID().uuidString):" }

    @Test("SET and GET are binary safe, NUL bytes included, in keys and values")
    func binarySafe() async throws {
        let redis = try Self.makeClient()
        let key = Array((Self.prefix() + "bin\u{0}key").utf8) + [0x00, 0xff]
        let value: [UInt8] = [0x00, 0x41, 0x00, 0xff, 0x0a, 0x0d, 0x00]
        #expect(try await redis.command(bytes: [Array("SET".utf8), key, value, Array("EX".utf8), Array("60".utf8)]) == .status("OK"))
        let read = try await redis.command(bytes: [Array("GET".utf8), key])
        #expect(read == .bulk(value))
        #expect(read.bytes == value)
        #expect(try await redis.command(bytes: [Array("STRLEN".utf8), key]) == .integer(7))
        // Empty values are values, not nulls.
        let empty = Self.prefix() + "empty"
        _ = try await redis.command(["SET", empty, "", "EX", "60"])
        #expect(try await redis.command(["GET", empty]) == .bulk([]))
        await redis.close()
    }

    @Test("integer, array, null and status replies map to RedisValue")
    func replyKinds() async throws {
        let redis = try Self.makeClient()
        let p = Self.prefix()
        #expect(try await redis.command(["INCR", p + "n"]) == .integer(1))
        #expect(try await redis.command(["INCRBY", p + "n", "41"]).int == 42)
        #expect(try await redis.command(["GET", p + "n"]).int == 42)  // bulk "42"
        #expect(try await redis.command(["GET", p + "missing"]) == .null)
        #expect(try await redis.command(["GET", p + "missing"]).isNull)
        #expect(try await redis.command(["RPUSH", p + "list", "a", "b", "c"]) == .integer(3))
        let list = try await redis.command(["LRANGE", p + "list", "0", "-1"])
        #expect(list.array?.compactMap(\.string) == ["a", "b", "c"])
        #expect(try await redis.command(["PING"]) == .status("PONG"))
        #expect(try await redis.command(["MGET", p + "n", p + "missing"]) == .array([.bulk(Array("42".utf8)), .null]))
        _ = try await redis.command(["DEL", p + "n", p + "list"])
        await redis.close()
    }

    @Test("an error reply is thrown, and the connection stays usable")
    func errorReplyThrown() async throws {
        let redis = try Self.makeClient(poolSize: 1)
        let p = Self.prefix()
        _ = try await redis.command(["SET", p + "text", "not a number", "EX", "60"])
        let error = await #expect(throws: RedisError.self) { try await redis.command(["INCR", p + "text"]) }
        #expect(error?.message.hasPrefix("ERR") == true, "\(String(describing: error))")
        #expect(error?.isConnection == false)
        let wrongType = await #expect(throws: RedisError.self) { try await redis.command(["LPUSH", p + "text", "x"]) }
        #expect(wrongType?.message.hasPrefix("WRONGTYPE") == true)
        await #expect(throws: RedisError.self) { try await redis.command(["NO-SUCH-COMMAND"]) }
        #expect(try await redis.command(["PING"]) == .status("PONG"))
        await redis.close()
    }

    @Test("eval passes keys and args and returns the script's value; a script error is thrown")
    func evalScript() async throws {
        let redis = try Self.makeClient()
        let p = Self.prefix()
        let script = RedisScript("""
            redis.call('SET', KEYS[1], ARGV[1], 'EX', 60)
            return {KEYS[1], redis.call('GET', KEYS[1]), tonumber(ARGV[2]) + 1, false}
            """)
        let value = try await redis.eval(script, keys: [p + "k"], args: ["v", "41"])
        #expect(value == .array([.bulk(Array((p + "k").utf8)), .bulk(Array("v".utf8)), .integer(42), .null]))
        // Second run goes by EVALSHA from the cache.
        #expect(try await redis.eval(script, keys: [p + "k"], args: ["w", "1"]).array?[1].string == "w")

        let failing = RedisScript("return redis.call('INCR', KEYS[1])")
        let error = await #expect(throws: RedisError.self) {
            try await redis.eval(failing, keys: [p + "k"], args: [])
        }
        #expect(error?.message.contains("not an integer") == true, "\(String(describing: error))")
        #expect(error?.isNoScript == false)
        await redis.close()
    }

    @Test("a pipeline of 100 INCRs returns 1...100 in order")
    func pipelineOfIncrements() async throws {
        let redis = try Self.makeClient()
        let key = Self.prefix() + "counter"
        let replies = try await redis.pipeline(Array(repeating: ["INCR", key], count: 100))
        #expect(replies == (1...100).map { RedisValue.integer(Int64($0)) })
        // An error in a pipeline stays in place; the other replies are kept.
        let mixed = try await redis.pipeline([["INCR", key], ["LPUSH", key, "x"], ["GET", key]])
        #expect(mixed[0] == .integer(101))
        if case .error(let message) = mixed[1] { #expect(message.hasPrefix("WRONGTYPE")) } else { Issue.record("\(mixed[1])") }
        #expect(mixed[2].int == 101)
        _ = try await redis.command(["DEL", key])
        await redis.close()
    }

    @Test("50 concurrent reserve-if-room evals never pass the limit: 33 of 30 fit in 1000")
    func concurrentReservations() async throws {
        let redis = try Self.makeClient(poolSize: 4)
        let key = Self.prefix() + "window"
        let reserve = RedisScript("""
            local current = tonumber(redis.call('GET', KEYS[1]) or '0')
            local amount = tonumber(ARGV[1])
            if current + amount <= tonumber(ARGV[2]) then
              return redis.call('INCRBY', KEYS[1], amount)
            end
            return -1
            """)
        let accepted = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<50 {
                group.addTask {
                    let total = try await redis.eval(reserve, keys: [key], args: ["30", "1000"])
                    return try #require(total.int) >= 0
                }
            }
            var accepted = 0
            for try await ok in group where ok { accepted += 1 }
            return accepted
        }
        #expect(accepted == 33)
        #expect(try await redis.command(["GET", key]).int == 990)
        _ = try await redis.command(["DEL", key])
        await redis.close()
    }

    @Test("blocked hiredis calls do not hold Swift's cooperative threads")
    func blockingStaysOffTheCooperativePool() async throws {
        // Three BLPOPs block in hiredis, more than the cooperative pool has threads on 2 cores.
        // If they held those threads, the LPUSH that releases them could never run.
        let blocking = try Self.makeClient(poolSize: 3)
        let pusher = try Self.makeClient(poolSize: 1)
        let key = Self.prefix() + "queue"
        try await withThrowingTaskGroup(of: RedisValue.self) { group in
            for _ in 0..<3 {
                group.addTask { try await blocking.command(["BLPOP", key, "20"]) }
            }
            var waiting: Int64 = 0
            for _ in 0..<500 where waiting < 3 {
                let clients = try await pusher.command(["CLIENT", "LIST"]).string ?? ""
                waiting = Int64(clients.split(separator: "\n").filter { $0.contains("cmd=blpop") }.count)
                if waiting < 3 { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(waiting >= 3)
            #expect(try await pusher.command(["RPUSH", key, "a", "b", "c"]).int == 3)
            var popped: [String] = []
            for try await value in group { popped.append(value.array?[1].string ?? "?") }
            #expect(popped.sorted() == ["a", "b", "c"])
        }
        await blocking.close()
        await pusher.close()
    }

    @Test("calls queued behind a busy connection go out in one pipeline, and each caller gets its own replies")
    func queuedCallsShareARoundTrip() async throws {
        let redis = try Self.makeClient(poolSize: 1)
        let admin = try Self.makeClient(poolSize: 1)
        let p = Self.prefix()
        _ = try await redis.command(["SET", p + "text", "not a number", "EX", "60"])
        let counted = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
        // The one connection waits in a BLPOP until the test pushes: every call made meanwhile
        // queues behind it.
        // (Other tests BLPOP on the same server: the connection is told apart by its id.)
        let id = try #require(try await redis.command(["CLIENT", "ID"]).int)
        let blocker = Task { try await redis.command(["BLPOP", p + "release", "30"]) }
        var blocked = false
        for _ in 0..<500 where !blocked {
            blocked = try await admin.command(["CLIENT", "LIST", "ID", String(id)]).string?.contains("cmd=blpop") == true
            if !blocked { try await Task.sleep(for: .milliseconds(5)) }
        }
        try #require(blocked)
        let before = redis.roundTrips
        enum Reply: Sendable, Equatable { case one(RedisValue), many([RedisValue]), failed(String) }
        async let answers = withThrowingTaskGroup(of: (Int, Reply).self) { group in
            for index in 0..<60 {
                group.addTask {
                    switch index % 4 {
                    case 0: return (index, .one(try await redis.command(["ECHO", "echo \(index)"])))
                    case 1: return (index, .many(try await redis.pipeline([["INCRBY", p + "n\(index)", "\(index)"], ["GET", p + "n\(index)"],
                                                                            ["EXPIRE", p + "n\(index)", "60"]])))
                    // EVAL with the source: EVALSHA would take a second round trip whenever another test flushes the scripts.
                    case 2: return (index, .one(try await redis.command(["EVAL", counted, "1", p + "s\(index)", "\(index)"])))
                    default:
                        do { return (index, .one(try await redis.command(["INCR", p + "text"]))) } catch let error as RedisError {
                            return (index, .failed(error.message))
                        }
                    }
                }
            }
            var replies: [Int: Reply] = [:]
            for try await (index, reply) in group { replies[index] = reply }
            return replies
        }
        // Every call is queued behind the BLPOP before it is answered.
        for _ in 0..<2000 where redis.queuedCalls < 60 { try await Task.sleep(for: .milliseconds(5)) }
        try #require(redis.queuedCalls == 60)
        _ = try await admin.command(["RPUSH", p + "release", "go"])
        let replies = try await answers
        let pipelined = redis.roundTrips - before
        #expect(try await blocker.value == .array([.bulk(Array((p + "release").utf8)), .bulk(Array("go".utf8))]))
        for index in 0..<60 {
            switch index % 4 {
            case 0: #expect(replies[index] == .one(.bulk(Array("echo \(index)".utf8))))
            case 1: #expect(replies[index] == .many([.integer(Int64(index)), .bulk(Array("\(index)".utf8)), .integer(1)]))
            case 2: #expect(replies[index] == .one(.integer(Int64(index))))
            default:
                guard case .failed(let message) = replies[index] else { Issue.record("call \(index): \(String(describing: replies[index]))"); continue }
                #expect(message.contains("not an integer"))
            }
        }
        // Without pipelining each of the 60 calls would be a round trip of its own.
        #expect(pipelined == 1, "60 queued calls took \(pipelined) round trips")
        #expect(try await redis.command(["PING"]) == .status("PONG"), "the error replies left the connection usable")
        _ = try await redis.command(["DEL", p + "text"])
        await redis.close()
        await admin.close()
    }

    @Test("a killed connection is replaced on next use; a reply timeout throws isConnection")
    func reconnects() async throws {
        let redis = try Self.makeClient(poolSize: 1)
        let admin = try Self.makeClient(poolSize: 1)
        let id = try #require(try await redis.command(["CLIENT", "ID"]).int)
        #expect(try await admin.command(["CLIENT", "KILL", "ID", String(id)]) == .integer(1))
        // The dead idle socket is noticed before sending; if not, that one call throws isConnection.
        let newID: Int64
        do {
            newID = try #require(try await redis.command(["CLIENT", "ID"]).int)
        } catch let error as RedisError {
            #expect(error.isConnection, "\(error)")
            newID = try #require(try await redis.command(["CLIENT", "ID"]).int)
        }
        #expect(newID != id)

        let impatient = try Self.makeClient(poolSize: 1, url: Self.url + "?timeout=0.2")
        let error = await #expect(throws: RedisError.self) {
            try await impatient.command(["BRPOP", Self.prefix() + "never", "5"])
        }
        #expect(error?.isConnection == true, "\(String(describing: error))")
        #expect(try await impatient.command(["PING"]) == .status("PONG"))

        await impatient.close()
        await redis.close()
        await admin.close()
        await #expect(throws: RedisError.self) { try await redis.command(["PING"]) }
    }

    @Test("URLs parse host, port, password and database")
    func configuration() throws {
        let full = try RedisConfiguration(url: "redis://user:p%40ss@cache.example:6390/3?timeout=0")
        #expect(full.host == "cache.example")
        #expect(full.port == 6390)
        #expect(full.username == "user")
        #expect(full.password == "p@ss")
        #expect(full.database == 3)
        #expect(full.commandTimeout == nil)
        #expect(!full.description.contains("p@ss"))
        let bare = try RedisConfiguration(url: "redis://:secret@127.0.0.1")
        #expect(bare.port == 6379 && bare.database == 0 && bare.username == nil && bare.password == "secret")
        #expect(throws: RedisError.self) { try RedisConfiguration(url: "http://127.0.0.1:6379") }
        #expect(throws: RedisError.self) { try RedisConfiguration(url: "redis://127.0.0.1:6379/x") }
    }
}

/// Every message logged through `RecordingLogHandler`s that share it, so a test can see which
/// path the client took. `@unchecked Sendable`: `messages` is only touched while holding `lock`.
/// The tests that run `SCRIPT FLUSH`, which empties the server's script cache for every client:
/// run one at a time, so that one's flush never lands inside the other's steps (a flush between
/// another test's load and its `EVALSHA` made that test see `NOSCRIPT` where it expected none).
@Suite("Redis client, script cache flushes", .serialized, .timeLimit(.minutes(2)))
struct RedisScriptFlushTests {
    @Test("after SCRIPT FLUSH, eval reloads the script (NOSCRIPT path) and still works")
    func evalAfterScriptFlush() async throws {
        let logs = LogRecorder()
        let redis = try RedisClientTests.makeClient(poolSize: 2, logs: logs)
        let p = RedisClientTests.prefix()
        // A source of its own, so no other test's cached SHA is involved.
        let script = RedisScript("-- \(p)\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
        #expect(try await redis.eval(script, keys: [p + "c"], args: ["5"]) == .integer(5))
        let sha = try #require(try await redis.command(["SCRIPT", "LOAD", script.source]).string)

        _ = try await redis.command(["SCRIPT", "FLUSH"])
        #expect(try await redis.command(["SCRIPT", "EXISTS", sha]) == .array([.integer(0)]))
        // What the first eval logged no longer matters: only the eval after our flush is checked.
        logs.clear()

        #expect(try await redis.eval(script, keys: [p + "c"], args: ["5"]) == .integer(10))
        #expect(logs.contains("NOSCRIPT"), "eval went through the NOSCRIPT reload path")
        #expect(try await redis.command(["SCRIPT", "EXISTS", sha]) == .array([.integer(1)]))
        _ = try await redis.command(["DEL", p + "c"])
        await redis.close()
    }

    @Test("several scripts in one round trip: each runs once, even after SCRIPT FLUSH; an error is thrown")
    func pipelinedScripts() async throws {
        let logs = LogRecorder()
        let redis = try RedisClientTests.makeClient(poolSize: 1, logs: logs)
        let p = RedisClientTests.prefix()
        let incr = RedisScript("-- \(p) incr\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
        let append = RedisScript("-- \(p) append\nreturn redis.call('APPEND', KEYS[1], ARGV[1])")
        let calls = [RedisScriptCall(incr, keys: [p + "n"], args: ["2"]), RedisScriptCall(append, keys: [p + "s"], args: ["ab"])]
        #expect(try await redis.eval(calls) == [.integer(2), .integer(2)])
        _ = try await redis.command(["SCRIPT", "FLUSH"])
        #expect(try await redis.eval(calls) == [.integer(4), .integer(4)], "lost scripts ran once, from their source")
        #expect(logs.contains("NOSCRIPT"))
        let failing = RedisScript("-- \(p) fail\nreturn redis.error_reply('scripted failure')")
        await #expect(throws: RedisError.self) { try await redis.eval([calls[0], RedisScriptCall(failing, keys: [], args: [])]) }
        #expect(try await redis.command(["GET", p + "n"]) == .bulk(Array("6".utf8)), "the other script of the round trip ran")
        _ = try await redis.command(["DEL", p + "n", p + "s"])
        await redis.close()
    }
}

final class LogRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [String] = []

    func append(_ message: String) { lock.withLock { messages.append(message) } }
    func contains(_ text: String) -> Bool { lock.withLock { messages.contains { $0.contains(text) } } }
    func clear() { lock.withLock { messages.removeAll() } }
}

struct RecordingLogHandler: LogHandler {
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    func log(event: LogEvent) { recorder.append(event.message.description) }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
}
