import Contract
import Fleet
import Foundation
import Payments
import Postgres
import Store

/// `settlement.run`: the daily settlement of one UTC day (the clock's slot, or an operator's
/// `date`), for every merchant with auto-settlement on.
///
/// It never holds a delivery for the whole fan-out: its transaction reads one batch of merchants
/// and publishes, through the outbox, one `settlement.merchant` per merchant (each its own
/// exactly-once effect, so one slow merchant never holds up the others) and a continuation after a
/// full batch. Only a day that has ended is settled; in sandbox mode `now` moves the clock.
public struct SettleRunHandler: CommandHandler {
    public let commandType = "settlement.run"
    public let scope = CommandScope.system
    let clock: WallClock
    let options: SettleOptions
    let settlements = SettlementStore()

    public func parse(_ data: JSONValue) -> Result<SettlementRunRequest, ValidationFailure> {
        SettlementRunRequest.parse(data, sandbox: options.sandbox.enabled)
    }

    /// What a run published.
    struct Fanned: Codable, Sendable {
        let date: String
        let now: String
        let merchants: Int
        let continued: Bool
    }

    public func handle(_ command: Command<SettlementRunRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let request = command.payload
        let now = request.now.flatMap(Timestamp.parse) ?? clock.now
        let today = UTCDay(containing: now)
        let day = request.date.flatMap(UTCDay.init) ?? today.adding(days: -1)
        guard day < today else {
            return .rejected(code: "invalid_request", message: "only a day that has ended is settled; \(day) has not (now is \(Timestamp.format(now)))",
                             errors: [FieldError("date", "must be before \(today)")])
        }
        if let merchant = command.merchant {
            return .rejected(code: "invalid_request", message: "settlement.run settles every merchant; settle \(merchant) with settlement.merchant",
                             errors: [FieldError("merchantid", "must be absent")])
        }
        let merchants = try await settlements.autoSettled(after: request.after, limit: options.settlementBatch, on: tx)
        // Per run, so that a merchant command forged ahead cannot take the key of the real one; a
        // second run of one day is harmless anyway: it finds every line already settled.
        let tag = String(MessageIds.sha256Hex("\(command.merchantId)|\(command.idempotencyKey)").prefix(16))
        var followUps = merchants.map { merchant in
            FollowUp(type: "settlement.merchant", merchantId: merchant, key: "settlement:\(day):\(tag)",
                     data: SettlementMerchantRequest(merchantId: merchant, date: day.description, now: request.now))
        }
        let continued = merchants.count >= options.settlementBatch
        if continued, let last = merchants.last {
            followUps.append(FollowUp(type: commandType, merchantId: nil, key: "settlement.run:\(day):\(tag):\(last)",
                                      data: SettlementRunRequest(date: day.description, now: request.now, after: last)))
        }
        let fanned = Fanned(date: day.description, now: Timestamp.format(now), merchants: merchants.count, continued: continued)
        return .done([Event(type: "settlement.run.completed", merchantId: nil, resourceKey: "settlement.run:\(command.id)", data: fanned)],
                     followUps: followUps)
    }
}
