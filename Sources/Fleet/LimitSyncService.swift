import Foundation
import Logging
import Metrics
import Redis
import ServiceLifecycle
import Store

/// Runs `LimitRecord.sync` every `interval` in one replica at a time (a Redis lock), and reports
/// counters that fell below the durable record: the limits would then no longer hold.
public final class LimitSyncService: Service, Sendable {
    let record: LimitRecord
    let interval: Duration
    let logger: Logger
    let synced = Gauge(label: "payfleet_limit_sync_merchants")
    let undercounted = Counter(label: "payfleet_limit_undercounted_total")

    public init(record: LimitRecord, interval: Duration, logger: Logger) {
        self.record = record
        self.interval = interval
        self.logger = logger
    }

    static let lockKey = "pf:lock:limit-sync"

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await Task.sleep(for: interval)
            await syncOnce()
        }
    }

    /// One pass, if no other replica ran one within the interval.
    public func syncOnce() async {
        do {
            let lease = max(1, Int(interval.components.seconds) * 1000 * 9 / 10)
            guard try await record.ledger.redis.command(["SET", Self.lockKey, ProcessInfo.processInfo.globallyUniqueString,
                                                         "NX", "PX", String(lease)]).string == "OK" else { return }
            let result = try await record.sync()
            synced.record(result.merchants)
            if !result.undercounted.isEmpty {
                undercounted.increment(by: result.undercounted.count)
                logger.error("limit counters below the durable record", metadata: [
                    "merchants": "\(result.undercounted.prefix(20).joined(separator: ","))"])
            }
            logger.debug("synced limit usage", metadata: ["merchants": "\(result.merchants)"])
        } catch {
            logger.warning("limit usage sync failed; next pass retries", metadata: ["error": "\(error)"])
        }
    }
}
