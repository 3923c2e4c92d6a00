import Contract
import Fleet
import Foundation
import Metrics
import Payments
import Postgres
import Store

/// `settlement.merchant`: one merchant's settlements of one UTC day, one per currency (RULES
/// "Settlement"): gross = the day's succeeded payments (captures included, by the time the money
/// was taken) - the day's refunds; fee = gross x the tier's rate, half-up in basis points; net =
/// gross - fee; the payout date by the tier's cycle on the business calendar.
///
/// Exactly once, and reconcilable line by line: each settlement is created with the stamps of the
/// payments and refunds it counts, in one transaction, and is unique per merchant, currency and
/// day, so a rerun finds nothing left to count. The transaction holds the merchant's limit lock
/// exclusive: every payment change of the merchant in flight commits first, and none that starts
/// later can still fall on the settled day. A day with no activity creates no settlement.
public struct SettleMerchantHandler: CommandHandler {
    public let commandType = "settlement.merchant"
    /// Sent by the fleet only (the daily fan-out): a merchant's own broker user may not.
    public let merchantsMaySend = false
    let clock: WallClock
    let options: SettleOptions
    let configuration: Configuration
    let settlements = SettlementStore()
    let merchants = MerchantStore()

    public func parse(_ data: JSONValue) -> Result<SettlementMerchantRequest, ValidationFailure> {
        SettlementMerchantRequest.parse(data, sandbox: options.sandbox.enabled)
    }

    public func locks(_ command: Command<SettlementMerchantRequest>) -> [PostgresStatement] {
        [LimitRecord.exclusiveLock(merchantId: command.merchantId)]
    }

    /// The command's outcome: which settlements it created (none: nothing to settle).
    struct Settled: Codable, Sendable {
        let merchantId: String
        let date: String
        let settlementIds: [String]
        enum CodingKeys: String, CodingKey { case merchantId = "merchant_id", date, settlementIds = "settlement_ids" }
    }

    public func handle(_ command: Command<SettlementMerchantRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let request = command.payload
        guard request.merchantId == command.merchantId else {
            return .rejected(code: "invalid_request", message: "data.merchant_id must be the command's merchant",
                             errors: [FieldError("merchant_id", "must equal merchantid")])
        }
        let now = request.now.flatMap(Timestamp.parse) ?? clock.now
        let day = request.day
        guard day < UTCDay(containing: now) else {
            return .rejected(code: "invalid_request", message: "only a day that has ended is settled; \(day) has not",
                             errors: [FieldError("date", "must be before \(UTCDay(containing: now))")])
        }
        guard let merchant = try await merchants.find(id: command.merchantId, on: tx) else {
            return .rejected(code: "merchant_not_found", message: "no merchant \(TextRules.forLog(command.merchantId, limit: 64))")
        }
        let calendar = try await configuration.document(.businessCalendar, on: tx).value
        let policy = merchant.tier.policy
        let payout = calendar.payoutDate(for: day, cycle: policy.settlementCycle)
        var created: [Settlement] = []
        for totals in try await settlements.totals(merchantId: merchant.merchantId, day: day, on: tx) {
            guard let figures = SettlementFigures(payments: totals.payments, refunds: totals.refunds,
                                                  feeBasisPoints: policy.feeBasisPoints) else {
                return .park("settlement of \(merchant.merchantId) \(totals.currency) \(day) overflows Int64")
            }
            let settlement = Settlement(settlementId: Settlement.id(merchantId: merchant.merchantId, currency: totals.currency, day: day),
                                        merchantId: merchant.merchantId, currency: totals.currency, date: day.description,
                                        figures: figures, feeBps: policy.feeBasisPoints, payoutDate: payout.description,
                                        paymentCount: totals.paymentCount, refundCount: totals.refundCount,
                                        createdAt: Timestamp.format(clock.now))
            try await settlements.create(settlement, day: day, counted: totals, on: tx)
            created.append(settlement)
            Counter(label: "payfleet_settlements_total", dimensions: [("currency", settlement.currency)]).increment()
        }
        let outcome = Event(type: "settlement.merchant.completed", merchantId: merchant.merchantId,
                            resourceKey: "settlement:\(merchant.merchantId):\(day)",
                            data: Settled(merchantId: merchant.merchantId, date: day.description, settlementIds: created.map(\.settlementId)))
        return .done([outcome] + created.map {
            Event(type: Settlement.eventType, merchantId: $0.merchantId, resourceKey: "settlement:\($0.settlementId)", data: $0)
        })
    }
}
