import Contract
import Fleet
import Foundation
import PaymentServices
import Payments
import Postgres
import Store

/// `preauth.expire`: every `authorized` or `partially_captured` pre-authorization past
/// `expires_at` becomes `expired`: the hold is voided at the channel, what was not captured is
/// released, and `preauth.expired` states the released amount. The same sweep shape as the
/// timeout worker: one command per due pre-authorization, each its own exactly-once effect, and
/// one conditional update (status, version, `expires_at <= now`) against a racing capture.
public struct ExpireHandler: CommandHandler {
    public let commandType = "preauth.expire"
    public let scope = CommandScope.system
    let context: PaymentContext
    let sweep: Sweep
    let closing: ClosingHolds
    let preAuths = PreAuthStore()

    init(context: PaymentContext, options: SweepOptions) {
        self.context = context
        sweep = Sweep(type: commandType, field: "pre_auth_no", batch: options.sweepBatch)
        closing = ClosingHolds(context: context)
    }

    public func parse(_ data: JSONValue) -> Result<SweepRequest, ValidationFailure> {
        SweepRequest.parse(data, resourceField: "pre_auth_no", prefix: "pa_", sandbox: context.options.sandbox)
    }

    public func locks(_ command: Command<SweepRequest>) -> [PostgresStatement] {
        command.payload.resource != nil && !command.merchantId.isEmpty ? [LimitRecord.sharedLock(merchantId: command.merchantId)] : []
    }

    public func handle(_ command: Command<SweepRequest>, in tx: PostgresConnection) async throws -> Outcome {
        let request = command.payload
        let now = request.now ?? context.clock.now
        guard let number = request.resource else {
            let due = try await preAuths.dueOpen(expiredBy: now, merchantId: command.merchant, after: request.after,
                                                 limit: sweep.batch, on: tx)
            return sweep.fanOut(command, request: request, now: now, due: due.map { ($0.preAuthNo, $0.merchantId) })
        }
        guard let merchantId = command.merchant else {
            return .rejected(code: "invalid_request", message: "an expiry of one pre-authorization names its merchant",
                             errors: [FieldError("merchantid", "is required with data.pre_auth_no")])
        }
        guard let stored = try await preAuths.load(preAuthNo: number, merchantId: merchantId, lock: true, on: tx) else {
            return .rejected(code: "not_found", message: "no pre-authorization \(number)")
        }
        guard stored.preAuth.status.isOpen else {
            return .rejected(code: "invalid_state", message: "\(number) is \(stored.preAuth.status.rawValue): it is already over")
        }
        guard stored.expiresAt <= now else {
            return .rejected(code: "invalid_state", message: "\(number) holds until \(stored.preAuth.expiresAt)")
        }
        return try await closing.close(stored, as: .expired, deadline: .expired(at: now), command: command, on: tx)
    }
}
