import Contract
import Fleet
import Foundation
import PaymentServices
import Payments
import Postgres
import Store

/// `payment.timeout`: ends payments left `pending` too long (RULES: 30 minutes, swept every 5).
///
/// The sweep (`{}`, or `{"now"}` in sandbox mode) fans out one command per due payment
/// (`Sweep`). Each of those, before cancelling, asks the channel what became of the charge, as
/// Kill Bill's janitor does: if the channel answers `succeeded`, the payment completes instead;
/// otherwise it becomes `cancelled` with failure code `timeout`, its limit is released and
/// `payment.timed_out` is emitted. The change is the payment's own exactly-once effect.
public struct TimeoutHandler: CommandHandler {
    public let commandType = "payment.timeout"
    public let scope = CommandScope.system
    /// A merchant's own broker user may sweep its own merchant's resources (a test clock).
    public let merchantsMaySend = true
    let context: PaymentContext
    let timeout: TimeInterval
    let sweep: Sweep
    let pending: PendingPayments
    let payments = PaymentStore()

    init(context: PaymentContext, options: SweepOptions) {
        self.context = context
        timeout = TimeInterval(options.paymentTimeout)
        sweep = Sweep(type: commandType, field: "payment_no", batch: options.sweepBatch)
        pending = PendingPayments(context: context)
    }

    public func parse(_ data: JSONValue) -> Result<SweepRequest, ValidationFailure> {
        SweepRequest.parse(data, resourceField: "payment_no", prefix: "pay_", sandbox: context.options.sandbox)
    }

    public func locks(_ command: Command<SweepRequest>) -> [PostgresStatement] { sweep.locks(command) }

    public func handle(_ command: Command<SweepRequest>, in tx: PostgresConnection) async throws -> Outcome {
        try await sweep.handle(command, clock: context.clock, due: { now, merchant, after, limit in
            try await payments.duePending(createdBefore: now.addingTimeInterval(-timeout), merchantId: merchant, after: after,
                                          limit: limit, on: tx).map { ($0.paymentNo, $0.merchantId) }
        }, one: { merchantId, paymentNo, now in
            try await timeOut(paymentNo, of: merchantId, at: now, command: command, on: tx)
        })
    }

    /// Ends one pending payment that is due: completed if the channel says it succeeded, else cancelled.
    func timeOut(_ paymentNo: String, of merchantId: String, at now: Date, command: Command<SweepRequest>,
                 on tx: PostgresConnection) async throws -> Outcome {
        guard let stored = try await payments.load(paymentNo: paymentNo, merchantId: merchantId, lock: true, on: tx) else {
            return .rejected(code: "not_found", message: "no payment \(paymentNo)")
        }
        guard stored.payment.status == .pending else {
            return .rejected(code: "invalid_state", message: "\(paymentNo) is \(stored.payment.status.rawValue), no longer pending")
        }
        let due = stored.createdAt.addingTimeInterval(timeout)
        guard due <= now else {
            return .rejected(code: "invalid_state", message: "\(paymentNo) is pending until \(Timestamp.format(due))")
        }
        if let channel = stored.payment.channel,
           case .succeeded(let reference) = try await context.channels.status(channel: channel, idempotencyKey: ChannelKeys.authorize(paymentNo)) {
            return try await pending.succeed(stored, reference: reference, command: command, on: tx)
        }
        return try await pending.end(stored, as: .cancelled, failure: .timeout,
                                     message: "no result from \(stored.payment.channel ?? "the channel") within \(Int(timeout / 60)) minutes",
                                     command: command, on: tx)
    }
}
