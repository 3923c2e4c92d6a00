import ConnectionThread
import Logging
import Synchronization

/// A small pool of hiredis connections, each owned by its own thread; binary safe.
///
/// - Each call goes to the connection with the fewest calls queued, which runs it while the
///   caller awaits; blocking never happens on Swift's cooperative threads.
/// - Calls that queue on one connection while it waits for a reply go out together: the
///   connection's thread writes every queued call's commands at once and reads the replies in
///   order (pipelining, one round trip for all of them). Each caller gets its own replies; each
///   script or `MULTI` is as atomic as before, since Redis runs one connection's commands in order.
/// - Connections open lazily, on first use. A broken connection is replaced on its next use;
///   the calls that saw it break (those of its pipeline) throw `RedisError.isConnection` and are
///   NOT retried (each may or may not have run; retry only idempotent commands, yourself).
/// - A command's error reply is thrown as `RedisError`.
/// - A blocking command (`BLPOP`, ...) holds its connection until it returns; calls picked for
///   that connection meanwhile wait behind it. Mind the configuration's `timeout` for those.
/// - Ordering: two calls awaited one after the other run in that order. Calls made concurrently
///   may run on different connections in any order; use `pipeline` or a script for atomicity.
public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    private let lanes: [Lane]
    private let logger: Logger
    /// Script source -> SHA1 the server returned from `SCRIPT LOAD`.
    private let scriptSHAs = Mutex<[String: String]>([:])
    private let closed = Atomic<Bool>(false)
    private let rotation = Atomic<Int>(0)

    public convenience init(url: String, poolSize: Int = 4, logger: Logger) throws {
        self.init(configuration: try RedisConfiguration(url: url), poolSize: poolSize, logger: logger)
    }

    public init(configuration: RedisConfiguration, poolSize: Int = 4, logger: Logger) {
        precondition(poolSize > 0, "RedisClient needs at least one connection")
        self.configuration = configuration
        self.logger = logger
        lanes = (0..<poolSize).map { index in
            Lane(thread: ConnectionThread(
                name: "redis-\(index)",
                state: HiredisSession(configuration: configuration, label: "\(configuration)#\(index)", logger: logger),
                teardown: { session in session.close() }))
        }
    }

    deinit {
        for lane in lanes { lane.thread.shutdown() }
    }

    /// Runs one command, e.g. `["SET", key, value, "PX", "5000"]` (arguments sent as UTF-8).
    public func command(_ arguments: [String]) async throws -> RedisValue {
        try await command(bytes: arguments.map { Array($0.utf8) })
    }

    /// Runs one command given as raw bytes: arguments may hold any byte, NUL included.
    public func command(bytes arguments: [[UInt8]]) async throws -> RedisValue {
        guard !arguments.isEmpty else { throw RedisError(message: "empty redis command") }
        let value = try await send([arguments])[0]
        if case .error(let message) = value { throw RedisError(message: message) }
        return value
    }

    /// Runs `script` with `EVALSHA`, loading it first (`SCRIPT LOAD`) if this client has no SHA
    /// for it yet. If the server lost it (`NOSCRIPT`: restart, failover, `SCRIPT FLUSH`), it is
    /// run once more with `EVAL <source>`, which puts it back in the server's script cache and
    /// runs it in one atomic step, so a second flush racing the retry cannot fail it. A script's
    /// error reply is thrown as `RedisError`.
    public func eval(_ script: RedisScript, keys: [String], args: [String]) async throws -> RedisValue {
        let tail = [Array(String(keys.count).utf8)] + keys.map { Array($0.utf8) } + args.map { Array($0.utf8) }
        let sha: String
        if let cached = scriptSHAs.withLock({ $0[script.source] }) {
            sha = cached
        } else {
            sha = try await load(script)
        }
        do {
            return try await command(bytes: [Array("EVALSHA".utf8), Array(sha.utf8)] + tail)
        } catch let error as RedisError where error.isNoScript {
            logger.debug("redis script missing on server (NOSCRIPT); sending its source again", metadata: ["sha": "\(sha)"])
            return try await command(bytes: [Array("EVAL".utf8), Array(script.source.utf8)] + tail)
        }
    }

    /// Runs several scripts in one round trip (pipelined `EVALSHA`s, each atomic on its own; not
    /// a transaction across them). Those the server had lost (`NOSCRIPT`) did not run and are sent
    /// again with their source. The first error reply of a script is thrown after all ran.
    public func eval(_ calls: [RedisScriptCall]) async throws -> [RedisValue] {
        func tail(_ call: RedisScriptCall) -> [[UInt8]] {
            [Array(String(call.keys.count).utf8)] + call.keys.map { Array($0.utf8) } + call.args.map { Array($0.utf8) }
        }
        var shas: [String] = []
        for call in calls {
            if let cached = scriptSHAs.withLock({ $0[call.script.source] }) { shas.append(cached) } else { shas.append(try await load(call.script)) }
        }
        var replies = try await pipeline(bytes: calls.indices.map { [Array("EVALSHA".utf8), Array(shas[$0].utf8)] + tail(calls[$0]) })
        let missing = replies.indices.filter { if case .error(let message) = replies[$0] { RedisError(message: message).isNoScript } else { false } }
        if !missing.isEmpty {
            logger.debug("redis scripts missing on server (NOSCRIPT); sending their source again", metadata: ["count": "\(missing.count)"])
            let again = try await pipeline(bytes: missing.map { [Array("EVAL".utf8), Array(calls[$0].script.source.utf8)] + tail(calls[$0]) })
            for (index, reply) in zip(missing, again) { replies[index] = reply }
        }
        for reply in replies { if case .error(let message) = reply { throw RedisError(message: message) } }
        return replies
    }

    /// Loads `script` on the server (`SCRIPT LOAD`), caches and returns its SHA1.
    @discardableResult
    public func load(_ script: RedisScript) async throws -> String {
        let reply = try await command(["SCRIPT", "LOAD", script.source])
        guard let sha = reply.string else {
            throw RedisError(message: "SCRIPT LOAD answered \(reply), not a SHA1")
        }
        scriptSHAs.withLock { $0[script.source] = sha }
        logger.debug("redis script loaded", metadata: ["sha": "\(sha)"])
        return sha
    }

    /// Sends every command, then reads every reply, on one connection in one round trip. Not a
    /// transaction (wrap in MULTI/EXEC for that). An error reply of one command is returned in
    /// its place as `.error` rather than thrown, so the other replies are not lost. A connection
    /// failure throws and loses all replies.
    public func pipeline(_ commands: [[String]]) async throws -> [RedisValue] {
        try await pipeline(bytes: commands.map { $0.map { Array($0.utf8) } })
    }

    /// `pipeline` with raw byte arguments.
    public func pipeline(bytes commands: [[[UInt8]]]) async throws -> [RedisValue] {
        guard !commands.contains(where: \.isEmpty) else { throw RedisError(message: "empty redis command in pipeline") }
        if commands.isEmpty { return [] }
        return try await send(commands)
    }

    /// Calls waiting for their connection's next pipeline now.
    public var queuedCalls: Int { lanes.reduce(0) { total, lane in total + lane.queue.withLock { $0.calls.count } } }

    /// Round trips to the server so far (a pipeline of queued calls counts once).
    public var roundTrips: Int { lanes.reduce(0) { $0 + $1.roundTrips.load(ordering: .relaxed) } }

    /// Stops taking commands, lets those already queued finish, closes every connection.
    public func close() async {
        closed.store(true, ordering: .releasing)
        for lane in lanes { await lane.thread.shutdownAndWait() }
        logger.debug("redis client closed")
    }

    /// Sends `commands` (one call's, in order) and returns their replies. The call joins the
    /// lane's queue; the lane's thread sends everything queued in one pipeline. A caller on a
    /// `BlockingExecutor` thread runs its call itself when the connection is idle (no thread hop).
    private func send(_ commands: [[[UInt8]]]) async throws -> [RedisValue] {
        let closedError = RedisError(message: "RedisClient is closed", isConnection: true)
        guard !closed.load(ordering: .acquiring) else { throw closedError }
        let lane = pickLane()
        defer { lane.calls.subtract(1, ordering: .relaxed) }
        if BlockingExecutor.isCurrentThread {
            return try await lane.thread.run(closedError: closedError) { session in
                lane.roundTrips.add(1, ordering: .relaxed)
                return try session.pipeline(commands)
            }
        }
        return try await withCheckedThrowingContinuation { continuation in
            let startsFlush = lane.queue.withLock { queue in
                queue.calls.append(Lane.Call(commands: commands, continuation: continuation))
                defer { queue.flushing = true }
                return !queue.flushing
            }
            guard startsFlush else { return }
            let accepted = lane.thread.submit { session in lane.flush(session) }
            if !accepted {
                let dropped = lane.queue.withLock { queue in
                    defer { queue = Lane.Queue() }
                    return queue.calls
                }
                for call in dropped { call.continuation.resume(throwing: closedError) }
            }
        }
    }

    /// One connection's thread, how many calls are queued on it or running, and the calls
    /// waiting for the next pipeline.
    private final class Lane: Sendable {
        struct Call: Sendable {
            let commands: [[[UInt8]]]
            let continuation: CheckedContinuation<[RedisValue], any Error>
        }
        struct Queue: Sendable {
            var calls: [Call] = []
            /// A flush job is queued or running on the thread: it takes what is queued.
            var flushing = false
        }
        let thread: ConnectionThread<HiredisSession>
        let calls = Atomic<Int>(0)
        let roundTrips = Atomic<Int>(0)
        let queue = Mutex(Queue())
        init(thread: ConnectionThread<HiredisSession>) { self.thread = thread }

        /// On the thread: sends every queued call in one pipeline and hands out the replies, until
        /// nothing is queued. A broken connection fails every call of that pipeline (each may or
        /// may not have run, as for a single call).
        func flush(_ session: HiredisSession) {
            while true {
                let batch = queue.withLock { queue in
                    defer { queue.calls = [] }
                    if queue.calls.isEmpty { queue.flushing = false }
                    return queue.calls
                }
                if batch.isEmpty { return }
                roundTrips.add(1, ordering: .relaxed)
                do {
                    let replies = try session.pipeline(batch.count == 1 ? batch[0].commands : batch.flatMap(\.commands))
                    var start = 0
                    for call in batch {
                        call.continuation.resume(returning: Array(replies[start..<start + call.commands.count]))
                        start += call.commands.count
                    }
                } catch {
                    for call in batch { call.continuation.resume(throwing: error) }
                }
            }
        }
    }

    /// The lane with the fewest calls; the scan starts at a rotating lane so that concurrent
    /// callers facing equal loads spread out instead of piling onto one connection.
    private func pickLane() -> Lane {
        let start = rotation.wrappingAdd(1, ordering: .relaxed).oldValue & Int.max
        var best = lanes[start % lanes.count]
        var bestLoad = best.calls.load(ordering: .relaxed)
        for step in 1..<lanes.count where bestLoad > 0 {
            let candidate = lanes[(start + step) % lanes.count]
            let load = candidate.calls.load(ordering: .relaxed)
            if load < bestLoad {
                best = candidate
                bestLoad = load
            }
        }
        best.calls.add(1, ordering: .relaxed)
        return best
    }
}
