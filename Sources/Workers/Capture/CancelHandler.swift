import Contract
import Fleet
import Foundation
import PaymentServices
import Payments
import Postgres
import Store

/// `preauth.cancel`: the merchant ends a hold; what was not captured is released
/// (`preauth.cancelled`, with `released_amount`). A hold that expired is the expiry sweep's.
public struct CancelHandler: CommandHandler {
    public let commandType = "preauth.cancel"
    let context: PaymentContext
    let closing: ClosingHolds
    let preAuths = PreAuthStore()

    init(context: PaymentContext) {
        self.context = context
        closing = ClosingHolds(context: context)
    }

    public func locks(_ command: Command<CancelRequest>) -> [PostgresStatement] {
        [LimitRecord.sharedLock(merchantId: command.merchantId)]
    }

    public func parse(_ data: JSONValue) -> Result<CancelRequest, ValidationFailure> { CancelRequest.parse(data) }

    public func handle(_ command: Command<CancelRequest>, in tx: PostgresConnection) async throws -> Outcome {
        guard let stored = try await preAuths.load(preAuthNo: command.payload.preAuthNo, merchantId: command.merchantId,
                                                   lock: true, on: tx) else {
            return .rejected(code: "not_found", message: "no pre-authorization \(command.payload.preAuthNo)")
        }
        let now = context.clock.now
        if stored.preAuth.status.isOpen, stored.expiresAt <= now {
            return .rejected(code: "invalid_state", message: "\(stored.preAuth.preAuthNo) expired at \(stored.preAuth.expiresAt)")
        }
        return try await closing.close(stored, as: .cancelled, deadline: .unexpired(at: now), command: command, on: tx)
    }
}
