import Contract
import Fleet
import Foundation
import Logging
import Metrics
import Payments
import Postgres
import Store

/// `archive.run` (weekly, RULES "Archive"): moves rows past their retention to the archive
/// tables, batch after batch, each batch its own transaction (`ArchiveStore`), with a pause
/// between batches so live traffic is not blocked.
///
/// A delivery works at most one slice (`--archive-slice-seconds`), then hands the rest of the run
/// to a follow-up `archive.run` naming the same run, so no delivery is held for long. The rows
/// moved are counted per run in the batches' own transactions: the closing
/// `sys.archive.completed` reports every row the run moved, across slices and crashes.
public struct ArchiveHandler: CommandHandler {
    public let commandType = "archive.run"
    public let scope = CommandScope.system
    let pool: PostgresPool
    let clock: WallClock
    let options: ArchiveOptions
    let logger: Logger
    let store = ArchiveStore()

    public func parse(_ data: JSONValue) -> Result<ArchiveRequest, ValidationFailure> { ArchiveRequest.parse(data) }

    /// What a run moved so far, per table.
    struct Report: Codable, Sendable {
        let runId: String
        let moved: [String: Int64]
        let finished: Bool
        enum CodingKeys: String, CodingKey { case runId = "run_id", moved, finished }
    }

    public func handle(_ command: Command<ArchiveRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let request = command.payload
        let run = request.run ?? "archive:\(command.id)"
        let tables = try options.tables().filter { request.tables?.contains($0.name) ?? true }
        let deadline = ContinuousClock.now + .seconds(options.sliceSeconds)
        var remaining = tables
        while let table = remaining.first, ContinuousClock.now < deadline {
            let cutoff = clock.now.addingTimeInterval(-TimeInterval(table.keepDays) * 86_400)
            let moved = try await store.moveBatch(table, olderThan: cutoff, run: run, pool: pool)
            Counter(label: "payfleet_archive_rows_total", dimensions: [("table", table.name)]).increment(by: moved)
            if moved > 0 { Faults.point("after-archive-batch") }
            if moved < table.batch { remaining.removeFirst() }
            if moved > 0 { try await Task.sleep(for: .milliseconds(options.pauseMilliseconds)) }
        }
        var moved = try await store.moved(run: run, on: tx)
        for table in tables where moved[table.name] == nil { moved[table.name] = 0 }
        let finished = remaining.isEmpty
        logger.info(finished ? "archive run completed" : "archive run continues in a follow-up",
                    metadata: ["run": "\(run)", "moved": "\(moved.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))"])
        let report = Report(runId: run, moved: moved, finished: finished)
        let event = Event(type: finished ? "archive.completed" : "archive.progress", merchantId: nil, resourceKey: "archive:\(run)", data: report)
        guard finished else {
            // Keyed by what the run moved so far: each slice's continuation is a new command.
            let total = moved.values.reduce(0, +)
            return .done([event], followUps: [FollowUp(type: commandType, merchantId: nil, key: "archive.run:\(run):\(total)",
                                                       data: ArchiveRequest(tables: remaining.map(\.name), run: run))])
        }
        return .done([event])
    }
}
