import ArgumentParser
import Fleet
import Store

/// Settings of `payfleet-clock`: the tick, the lease, and every task's interval (RULES
/// "Scheduler" by default).
public struct ClockOptions: ParsableArguments, Sendable {
    @Option(help: "Seconds between the clock's looks at what is due (env PAYFLEET_CLOCK_TICK).")
    public var tick: Int = Int(environment("PAYFLEET_CLOCK_TICK") ?? "") ?? 1

    @Option(name: .customLong("lease"), help: "Seconds the leader's lease lasts without renewal; another clock takes over within it (env PAYFLEET_CLOCK_LEASE).")
    public var lease: Int = Int(environment("PAYFLEET_CLOCK_LEASE") ?? "") ?? 15

    @Option(name: .customLong("timeout-sweep-interval"), help: "Seconds between payment timeout sweeps (env PAYFLEET_TIMEOUT_SWEEP_INTERVAL).")
    public var timeoutSweep: Int64 = Int64(environment("PAYFLEET_TIMEOUT_SWEEP_INTERVAL") ?? "") ?? 300

    @Option(name: .customLong("expiry-sweep-interval"), help: "Seconds between pre-authorization expiry sweeps (env PAYFLEET_EXPIRY_SWEEP_INTERVAL).")
    public var expirySweep: Int64 = Int64(environment("PAYFLEET_EXPIRY_SWEEP_INTERVAL") ?? "") ?? 1_800

    @Option(name: .customLong("settlement-interval"), help: "Seconds between settlement runs (env PAYFLEET_SETTLEMENT_INTERVAL).")
    public var settlement: Int64 = Int64(environment("PAYFLEET_SETTLEMENT_INTERVAL") ?? "") ?? 86_400

    @Option(name: .customLong("settlement-catch-up"), help: "Missed settlement days run after downtime; older ones are skipped (env PAYFLEET_SETTLEMENT_CATCH_UP).")
    public var settlementCatchUp: Int = Int(environment("PAYFLEET_SETTLEMENT_CATCH_UP") ?? "") ?? 7

    @Option(name: .customLong("archive-interval"), help: "Seconds between archive runs; 7 days runs them Mondays 00:00 UTC (env PAYFLEET_ARCHIVE_INTERVAL).")
    public var archive: Int64 = Int64(environment("PAYFLEET_ARCHIVE_INTERVAL") ?? "") ?? 604_800

    @Option(name: .customLong("export-cleanup-interval"), help: "Seconds between export cleanups (env PAYFLEET_EXPORT_CLEANUP_INTERVAL).")
    public var exportCleanup: Int64 = Int64(environment("PAYFLEET_EXPORT_CLEANUP_INTERVAL") ?? "") ?? 3_600

    @Option(name: .customLong("retention-interval"), help: "Seconds between retention.prune runs, which forget old inbox rows and HTTP idempotency keys; at half past the hour by default (env PAYFLEET_RETENTION_INTERVAL).")
    public var retention: Int64 = Int64(environment("PAYFLEET_RETENTION_INTERVAL") ?? "") ?? 3_600

    public init() {}

    public mutating func validate() throws {
        guard tick >= 1 else { throw ValidationError("--tick must be >= 1") }
        guard lease >= 2 * tick else { throw ValidationError("--lease must be at least twice --tick") }
        for (name, value) in [("timeout-sweep", timeoutSweep), ("expiry-sweep", expirySweep), ("settlement", settlement),
                              ("archive", archive), ("export-cleanup", exportCleanup), ("retention", retention)] where value < 1 {
            throw ValidationError("--\(name)-interval must be >= 1 second")
        }
        guard settlementCatchUp >= 1 else { throw ValidationError("--settlement-catch-up must be >= 1") }
    }

    public var tasks: [ScheduledTask] {
        ScheduledTask.standard(timeoutSweep: timeoutSweep, expirySweep: expirySweep, settlement: settlement, archive: archive,
                               exportCleanup: exportCleanup, retention: retention, settlementCatchUp: settlementCatchUp)
    }
}

/// The clock's setup: no queue; the clock service with its leader lock.
public struct ClockWorker: WorkerSetup {
    public let name = "payfleet-clock"
    public let queue: String? = nil
    let options: ClockOptions

    public init(options: ClockOptions) { self.options = options }

    public static let lockKey = "pf:lock:clock"

    public func assemble(_ environment: WorkerEnvironment) async throws -> WorkerAssembly {
        var assembly = WorkerAssembly()
        assembly.run(Clock(tasks: options.tasks, store: ScheduledTaskStore(pool: environment.postgres),
                           lock: LeaderLock(redis: environment.redis, key: Self.lockKey, lease: .seconds(options.lease)),
                           publisher: environment.publisher, clock: environment.clock, tick: .seconds(options.tick),
                           logger: environment.logger))
        return assembly
    }
}
