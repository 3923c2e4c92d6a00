import Logging
import ServiceLifecycle

/// The one loop behind everything a worker does on a schedule: hot settings, the limit sync, the
/// outbox relay and the clock.
///
/// Every `interval` (or at once after `notify()`, when a `wake` signal is given) it runs one pass
/// of `body`, until graceful shutdown. A pass that answers `.more` runs again at once. A pass that
/// throws is logged, and the next one waits a backoff (100 ms doubling up to `maxBackoff`) instead
/// of the interval. With a `LeaderLock`, a pass runs only in the one process holding the lease; the
/// lease is renewed while the pass runs and released at shutdown, and the pass gets its fencing
/// token.
public final class PeriodicTask: Service, Sendable {
    /// What a pass says about the next one.
    public enum Pass: Sendable {
        /// Wait for the interval (or a wake-up).
        case idle
        /// There is more to do: run again at once.
        case more
    }

    /// What a pass knows about its run.
    public struct Context: Sendable {
        /// The leader lock's fencing token, when the task has a lock (a pass runs only while held).
        public let fencingToken: String?
    }

    public let name: String
    let interval: Duration
    let lock: LeaderLock?
    let maxBackoff: Duration
    let runAtStart: Bool
    let logger: Logger
    let body: @Sendable (Context) async throws -> Pass
    private let wake = WakeSignal()

    /// - Parameters:
    ///   - runAtStart: run the first pass at once rather than after one interval.
    public init(name: String, interval: Duration, lock: LeaderLock? = nil,
                maxBackoff: Duration = .seconds(5), runAtStart: Bool = false, logger: Logger,
                body: @escaping @Sendable (Context) async throws -> Pass) {
        self.name = name
        self.interval = interval
        self.lock = lock
        self.maxBackoff = maxBackoff
        self.runAtStart = runAtStart
        self.logger = logger
        self.body = body
    }

    /// Starts the next pass now instead of at the end of the interval.
    public func notify() { wake.signal() }

    public func run() async throws {
        var backoff = Duration.milliseconds(100)
        var next: Duration = runAtStart ? .zero : interval
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if next > .zero {
                // A graceful shutdown ends the wait at once (a cancellation already does: it ends
                // the wait's sleep). Without this a stopping worker waited out each task's interval
                // in turn (the limit sync's 15 s, then the settings'), past a short
                // `--shutdown-timeout`, and ServiceLifecycle then stopped it with a fatal error.
                await withGracefulShutdownHandler {
                    await wake.wait(timeout: next)
                } onGracefulShutdown: { [wake] in
                    wake.signal()
                }
                if Task.isShuttingDownGracefully || Task.isCancelled { break }
            }
            do {
                let pass = try await once()
                backoff = .milliseconds(100)
                next = pass == .more ? .zero : interval
            } catch {
                logger.warning("periodic pass failed; backing off", metadata: [
                    "task": "\(name)", "error": "\(error)", "backoff": "\(backoff)"])
                next = backoff
                backoff = min(backoff * 2, maxBackoff)
            }
        }
        await lock?.release()
    }

    /// One pass now (if this process holds the lease, when there is a lock). Returns `.idle` when
    /// another process holds it.
    @discardableResult
    public func once() async throws -> Pass {
        guard let lock else { return try await body(Context(fencingToken: nil)) }
        guard let token = try await lock.acquireOrRenew() else { return .idle }
        // Keep the lease while the pass runs (a pass may outlast it).
        return try await withThrowingTaskGroup(of: Pass?.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: lock.lease / 3)
                    if Task.isCancelled { break }
                    if (try? await lock.acquireOrRenew()) != token {
                        self.logger.warning("lost the leader lock during a pass", metadata: ["task": "\(self.name)", "lock": "\(lock.key)"])
                        break
                    }
                }
                return nil
            }
            group.addTask { try await self.body(Context(fencingToken: token)) }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let pass = result { return pass }
            }
            return .idle
        }
    }
}
