import Contract
import Fleet
import Foundation
import Logging
import Payments
import Postgres
import Store

/// `export.run`: writes a merchant's payment export (RULES "Export"; the CSV is `ExportCSV`).
///
/// Constant memory, crash-safe, never holding a delivery for long:
/// - the file is written in chunks of `--export-chunk-rows` rows, read by keyset (creation time,
///   number) after the last row written, never the whole result in memory;
/// - each chunk commits with its progress, in its own transaction (`ExportStorage.put` and
///   `ExportStore.advance`), so after `kill -9` the export resumes from the last committed chunk,
///   with no row duplicated or missing;
/// - a delivery writes for at most `--export-slice-seconds`, then continues by a follow-up
///   `export.run` (`export.progress` is that slice's outcome);
/// - the last slice digests the file (SHA-256, chunk by chunk) and completes the task, with
///   `export.completed`; a task that keeps failing ends `failed`, with `export.failed`.
public struct ExportHandler: CommandHandler {
    public let commandType = "export.run"
    let pool: PostgresPool
    let clock: WallClock
    let options: ExportOptions
    let storage: any ExportStorage
    let logger: Logger
    let exports = ExportStore()

    public func parse(_ data: JSONValue) -> Result<ExportRunRequest, ValidationFailure> { ExportRunRequest.parse(data) }

    public func handle(_ command: Command<ExportRunRequest>, in tx: PostgresConnection) async throws -> Outcome {
        guard var stored = try await exports.load(taskId: command.payload.taskId, merchantId: command.merchantId, on: tx) else {
            return .rejected(code: "not_found", message: "no export task \(command.payload.taskId)")
        }
        switch stored.task.status {
        case .completed, .failed, .expired:
            // Done already (a duplicate, or a continuation after the end): report it as it is.
            return .done([event(stored.task)])
        case .pending, .processing:
            break
        }
        do {
            let deadline = ContinuousClock.now + .seconds(options.sliceSeconds)
            var finished = false
            while !finished, ContinuousClock.now < deadline {
                (stored, finished) = try await writeChunk(of: stored)
                Faults.point("after-export-chunk")
            }
            guard finished else {
                return .done([event(stored.task)],
                             followUps: [FollowUp(type: commandType, merchantId: command.merchantId, key: "export.run:\(stored.task.taskId):\(stored.nextSeq)",
                                                  data: ExportRunRequest(taskId: stored.task.taskId, step: Int64(stored.nextSeq)))])
            }
            var task = stored.task
            let now = clock.now
            task.status = .completed
            task.rowCount = task.rowsDone
            task.size = stored.bytes
            task.sha256 = try await exports.digest(of: stored, storage: storage)
            task.expiresAt = Timestamp.format(now.addingTimeInterval(TimeInterval(options.keepHours) * 3_600))
            task.version += 1
            task.updatedAt = Timestamp.format(now)
            logger.info("export completed", metadata: ["task": "\(task.taskId)", "rows": "\(task.rowsDone)", "bytes": "\(stored.bytes)"])
            return .done([event(task)], effects: [exports.finish(task)])
        } catch where command.isFinalAttempt {
            var task = stored.task
            task.status = .failed
            task.failureMessage = TextRules.forLog("the export could not be written: \(error)", limit: 300)
            task.version += 1
            task.updatedAt = Timestamp.format(clock.now)
            return .done([event(task)], effects: [exports.finish(task)])
        }
    }

    /// Writes the next chunk in its own transaction; returns the task after it, and whether the file is complete.
    func writeChunk(of stored: StoredExport) async throws -> (StoredExport, Bool) {
        try await pool.transaction { chunkTx in
            guard var current = try await exports.load(taskId: stored.task.taskId, merchantId: stored.task.merchantId, lock: true, on: chunkTx) else {
                throw StoreError.corrupt("export task \(stored.task.taskId) vanished")
            }
            let now = clock.now
            if current.task.status == .pending { current = try await exports.start(current, at: now, on: chunkTx) }
            let page = try await exports.rows(after: current, limit: options.chunkRows, on: chunkTx)
            var bytes = current.nextSeq == 0 ? ExportCSV.head() : []
            bytes.reserveCapacity(bytes.count + page.rows.count * 256)
            for row in page.rows { ExportCSV.append(row, to: &bytes) }
            let done = page.rows.count < options.chunkRows
            // The last chunk may be empty (the rows ended exactly at a chunk's end): nothing to store.
            if bytes.isEmpty { return (current, true) }
            try await storage.put(taskId: current.task.taskId, seq: current.nextSeq, rows: page.rows.count, data: bytes, in: chunkTx)
            let after = try await exports.advance(current, rows: page.rows.count, bytes: bytes.count, lastCreatedAt: page.lastCreatedAt,
                                                  lastPaymentNo: page.lastPaymentNo, at: now, on: chunkTx)
            return (after, done)
        }
    }

    func event(_ task: ExportTask) -> Event {
        Event(type: task.eventType, merchantId: task.merchantId, resourceKey: "export:\(task.taskId)", data: task)
    }
}

/// `export.cleanup` (hourly): exports past their time become `expired` and their files are
/// removed; a download then answers 410. In sandbox mode `now` moves the clock.
public struct ExportCleanupHandler: CommandHandler {
    public let commandType = "export.cleanup"
    public let scope = CommandScope.system
    let clock: WallClock
    let options: ExportOptions
    let storage: any ExportStorage
    let exports = ExportStore()

    public func parse(_ data: JSONValue) -> Result<CleanupRequest, ValidationFailure> {
        CleanupRequest.parse(data, sandbox: options.sandbox.enabled)
    }

    struct Cleaned: Codable, Sendable {
        let now: String
        let expired: Int
    }

    public func handle(_ command: Command<CleanupRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let now = command.payload.now.flatMap(Timestamp.parse) ?? clock.now
        let expired = try await exports.expire(now: now, keep: TimeInterval(options.keepHours) * 3_600, on: tx)
        // Removing a file twice is harmless: a rollback after this leaves the task to the next cleanup.
        for taskId in expired { try await storage.delete(taskId: taskId) }
        return .done([Event(type: "export.cleanup.completed", merchantId: nil, resourceKey: "export.cleanup:\(command.id)",
                            data: Cleaned(now: Timestamp.format(now), expired: expired.count))])
    }
}
