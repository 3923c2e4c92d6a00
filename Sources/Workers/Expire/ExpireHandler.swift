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
    /// A merchant's own broker user may sweep its own merchant's resources (a test clock).
    public let merchantsMaySend = true
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

    public func locks(_ command: Command<SweepRequest>) -> [PostgresStatement] { sweep.locks(command) }

    public func handle(_ command: Command<SweepRequest>, in tx: PostgresConnection) async throws -> Outcome {
        try await sweep.handle(command, clock: context.clock, due: { now, merchant, after, limit in
            try await preAuths.dueOpen(expiredBy: now, merchantId: merchant, after: after, limit: limit, on: tx)
                .map { ($0.preAuthNo, $0.merchantId) }
        }, one: { merchantId, number, now in
            try await expire(number, of: merchantId, at: now, command: command, on: tx)
        })
    }

    /// Ends one open pre-authorization whose hold is over.
    func expire(_ number: String, of merchantId: String, at now: Date, command: Command<SweepRequest>,
                on tx: PostgresConnection) async throws -> Outcome {
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
