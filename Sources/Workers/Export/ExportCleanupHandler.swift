import Contract
import Fleet
import Foundation
import Payments
import Postgres
import Store

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
