import Fleet
import Foundation
import Logging
import Metrics
import Redis
import ServiceLifecycle
import Store

/// Runs `LimitRecord.sync` every `interval` in one replica at a time (the leader of a Redis lock):
/// counters that fell below the durable record (the limits would then no longer hold) are raised
/// to it, logged and counted in `payfleet_limit_undercounted_total`.
public final class LimitSyncService: Service, Sendable {
    let record: LimitRecord
    let interval: Duration
    let clock: WallClock
    let logger: Logger
    let synced = Gauge(label: "payfleet_limit_sync_merchants")
    let undercounted = Counter(label: "payfleet_limit_undercounted_total")

    public init(record: LimitRecord, interval: Duration, clock: WallClock = .system, logger: Logger) {
        self.record = record
        self.interval = interval
        self.clock = clock
        self.logger = logger
    }

    static let lockKey = "pf:lock:limit-sync"

    public func run() async throws {
        // The leader keeps its lease across passes (three intervals long): one replica syncs, and
        // another takes over within three intervals of its death.
        let lock = LeaderLock(redis: record.ledger.redis, key: Self.lockKey, lease: interval * 3)
        try await PeriodicTask(name: "limit sync", interval: interval, lock: lock, logger: logger) { _ in
            try await self.syncOnce()
            return .idle
        }.run()
    }

    /// One pass.
    public func syncOnce() async throws {
        let result = try await record.sync(at: clock.now)
        synced.record(result.merchants)
        if !result.undercounted.isEmpty {
            undercounted.increment(by: result.undercounted.count)
            logger.error("limit counters were below the durable record; raised to it", metadata: [
                "merchants": "\(result.undercounted.prefix(20).joined(separator: ","))"])
        }
        logger.debug("synced limit usage", metadata: ["merchants": "\(result.merchants)"])
    }
}
