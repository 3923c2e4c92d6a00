import Contract
import Fleet
import Foundation
import PaymentServices
import Payments
import Postgres
import Store

/// Ends an open pre-authorization without capturing the rest: what cancel (`preauth.cancel`) and
/// expiry (`preauth.expire`) share. The hold is voided at the channel (keyed `pa_…:void`: once,
/// whichever ends it), what was not captured is released in Redis and in the durable record,
/// and the event states the released amount. The caller holds the row (`FOR UPDATE`) and the
/// merchant's limit lock shared; the change is one conditional update on status, version and
/// the deadline, so of a cancel, an expiry and a capture racing, exactly one wins.
struct ClosingHolds: Sendable {
    let context: PaymentContext
    let preAuths = PreAuthStore()

    /// Closes `stored` as `.cancelled` or `.expired`; `deadline` is the condition on `expires_at`.
    func close<P>(_ stored: StoredPreAuth, as status: PreAuthStatus, deadline: PreAuthStore.Deadline,
                  command: Command<P>, on tx: PostgresConnection) async throws -> Outcome {
        let before = stored.preAuth
        var amounts = before.amounts
        let released: Int64
        do { released = try amounts.close(as: status) } catch {
            return .rejected(code: "invalid_state", message: "\(before.preAuthNo) is \(before.status.rawValue): it is already over")
        }
        guard let channel = before.channel else { throw StoreError.corrupt("pre-authorization \(before.preAuthNo) has no channel") }
        switch try await context.channels.call(ChannelRequest(channel: channel, operation: .void,
                                                              idempotencyKey: ChannelKeys.void(before.preAuthNo), amount: nil,
                                                              currency: before.currency, resource: before.preAuthNo)) {
        case .succeeded, .pending: break
        case .declined(let reason), .transientError(let reason): return .retryLater("the void at \(channel) failed: \(reason)")
        case .noAnswer: return .retryLater("the void at \(channel) got no answer")
        }
        let now = context.clock.now
        var after = stored
        after.preAuth.status = amounts.status
        after.preAuth.releasedAmount += released
        after.preAuth.version += 1
        after.preAuth.updatedAt = Timestamp.format(now)
        guard try await preAuths.update(after, from: before.status, deadline: deadline, at: now, on: tx) else {
            throw ConcurrentChange(resource: before.preAuthNo)
        }
        let releasedBase = stored.amountBase - stored.capturedBase
        try await context.ledger.release(merchantId: before.merchantId, reservationKey: stored.limitKey, windows: LimitWindows(at: now),
                                         recorded: releasedBase > 0 ? (releasedBase, stored.countedAt) : nil)
        let effects = releasedBase > 0
            ? [LimitRecord.entry(.release, merchantId: before.merchantId, limitKey: stored.limitKey, countedAt: stored.countedAt,
                                 amount: releasedBase, at: now, ref: before.preAuthNo)]
            : []
        return .done([Event(type: after.preAuth.eventType, merchantId: before.merchantId, resourceKey: "preauth:\(before.preAuthNo)",
                            data: after.preAuth)], effects: effects)
    }
}
