import Contract
import Foundation

/// One task of RULES "Scheduler": the command it publishes, how often, and how far it catches up
/// after downtime. Pure: which slots are due, and which to run or skip, are computed here.
public struct ScheduledTask: Sendable {
    /// The task's name, also its command type (`payment.timeout`, `settlement.run`, ...).
    public let name: String
    /// Seconds between slots.
    public let every: Int64
    /// Slots start at `offset + k * every` seconds since 1970 (UTC).
    public let offset: Int64
    /// After downtime, the most recent slots run up to this many; older missed slots are skipped,
    /// each with a `skipped` row so that nothing vanishes silently.
    public let catchUp: Int
    /// The command's `data` for a slot.
    public let data: @Sendable (Date) -> JSONValue

    public init(name: String, every: Int64, offset: Int64 = 0, catchUp: Int, data: @escaping @Sendable (Date) -> JSONValue = { _ in .object([:]) }) {
        precondition(every > 0 && catchUp >= 1)
        self.name = name
        self.every = every
        self.offset = offset
        self.catchUp = catchUp
        self.data = data
    }

    /// The latest slot at or before `now`.
    public func slot(at now: Date) -> Date {
        let seconds = Int64(now.timeIntervalSince1970.rounded(.down)) - offset
        let start = seconds >= 0 ? seconds / every * every : -((-seconds + every - 1) / every * every)
        return Date(timeIntervalSince1970: TimeInterval(start + offset))
    }

    /// The slots due after `last` (the latest recorded; nil before the first run) up to `now`:
    /// which to run (the `catchUp` most recent) and which to skip (the rest). A first run runs the
    /// current slot only: there is no history before it to catch up.
    public func plan(last: Date?, now: Date) -> (run: [Date], skip: [Date]) {
        let latest = slot(at: now)
        guard let last else { return ([latest], []) }
        guard latest > last else { return ([], []) }
        let missed = Int64((latest.timeIntervalSince(last) / TimeInterval(every)).rounded())
        let slots = (0..<missed).reversed().map { latest.addingTimeInterval(-TimeInterval($0 * every)) }
        return (Array(slots.suffix(catchUp)), Array(slots.dropLast(catchUp)))
    }

    /// The command's idempotency key: the task and its slot (`payment.timeout@2026-12-02T00:05:00.000Z`).
    /// Two clocks, or one restarted, publish one slot under one key, so the worker's inbox takes it once.
    public func key(for slot: Date) -> String { "\(name)@\(Timestamp.format(slot))" }
}

extension ScheduledTask {
    public static let minute: Int64 = 60, hour: Int64 = 3_600, day: Int64 = 86_400
    /// 1970-01-01 was a Thursday: weeks aligned to Monday 00:00 UTC start 4 days later.
    static let monday: Int64 = 4 * day

    /// RULES "Scheduler", with the intervals from the clock's options.
    public static func standard(timeoutSweep: Int64 = 5 * minute, expirySweep: Int64 = 30 * minute, settlement: Int64 = day,
                                archive: Int64 = 7 * day, exportCleanup: Int64 = hour, retention: Int64 = hour,
                                settlementCatchUp: Int = 7) -> [ScheduledTask] {
        [
            ScheduledTask(name: "payment.timeout", every: timeoutSweep, catchUp: 1),
            ScheduledTask(name: "preauth.expire", every: expirySweep, catchUp: 1),
            // The day before the slot: settlement of yesterday (UTC), as `settlement.run` defaults to.
            ScheduledTask(name: "settlement.run", every: settlement, catchUp: settlementCatchUp) { slot in
                .object(["date": .string(String(Timestamp.format(slot.addingTimeInterval(-TimeInterval(day))).prefix(10)))])
            },
            ScheduledTask(name: "archive.run", every: archive, offset: archive % (7 * day) == 0 ? monday : 0, catchUp: 1),
            ScheduledTask(name: "export.cleanup", every: exportCleanup, catchUp: 1),
            ScheduledTask(name: "retention.prune", every: retention, offset: 30 * minute, catchUp: 1),
        ]
    }
}
