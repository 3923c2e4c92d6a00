import Contract
import Fleet
import Foundation
import Logging
import Metrics
import Payments
import Postgres

/// `retention.prune` (hourly, from the clock): forgets what idempotency needs no longer.
/// - HTTP `Idempotency-Key` records after `--http-idempotency-hours` (24, CONTRACT §4): a retry
///   after that is a new request, which the worker's inbox still recognises by its key;
/// - inbox rows after `--inbox-retention-days` (7): a command redelivered or re-published after
///   that is taken as new (see the README, "Retention").
/// Each delivery deletes at most `--prune-batch` rows per table in its own transaction, the
/// oldest first, and hands the rest to a follow-up `retention.prune`, so no delivery or
/// transaction grows with the backlog. In sandbox mode `now` moves the clock.
public struct RetentionHandler: CommandHandler {
    public let commandType = "retention.prune"
    public let scope = CommandScope.system
    let clock: WallClock
    let options: ArchiveOptions
    let logger: Logger

    public func parse(_ data: JSONValue) -> Result<CleanupRequest, ValidationFailure> {
        CleanupRequest.parse(data, sandbox: options.sandbox.enabled)
    }

    struct Pruned: Codable, Sendable {
        let now: String
        let inbox: Int
        let httpIdempotency: Int
        let finished: Bool
        enum CodingKeys: String, CodingKey { case now, inbox, httpIdempotency = "http_idempotency", finished }
    }

    public func handle(_ command: Command<CleanupRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let now = command.payload.now.flatMap(Timestamp.parse) ?? clock.now
        let inboxCutoff = now.addingTimeInterval(-TimeInterval(options.inboxRetentionDays) * 86_400)
        let keyCutoff = now.addingTimeInterval(-TimeInterval(options.httpIdempotencyHours) * 3_600)
        let limit = options.pruneBatch
        let inbox = try await tx.query("""
            DELETE FROM inbox WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM inbox WHERE created_at < $1::timestamptz ORDER BY created_at LIMIT $2))
            """, [inboxCutoff, limit]).affectedRows
        let keys = try await tx.query("""
            DELETE FROM http_idempotency WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM http_idempotency WHERE created_at < $1::timestamptz ORDER BY created_at LIMIT $2))
            """, [keyCutoff, limit]).affectedRows
        Counter(label: "payfleet_retention_pruned_total", dimensions: [("table", "inbox")]).increment(by: inbox)
        Counter(label: "payfleet_retention_pruned_total", dimensions: [("table", "http_idempotency")]).increment(by: keys)
        let finished = inbox < limit && keys < limit
        if inbox + keys > 0 {
            logger.info("pruned idempotency records", metadata: ["inbox": "\(inbox)", "http_idempotency": "\(keys)",
                                                                 "finished": "\(finished)"])
        }
        let report = Pruned(now: Timestamp.format(now), inbox: inbox, httpIdempotency: keys, finished: finished)
        let event = Event(type: "retention.pruned", merchantId: nil, resourceKey: "retention:\(command.id)", data: report)
        guard finished else {
            return .done([event], followUps: [FollowUp(type: commandType, merchantId: nil, key: "\(command.idempotencyKey)+",
                                                       data: command.payload)])
        }
        return .done([event])
    }
}
