/// A payment's status. The allowed transitions are data (`PaymentStatus.transitions`);
/// anything else is an `IllegalTransition`, never a silent overwrite.
public enum PaymentStatus: String, Sendable, Codable, CaseIterable {
    case processing, succeeded, pending, failed, cancelled
    case partiallyRefunded = "partially_refunded"
    case refunded

    /// RULES "Payments and pre-authorizations".
    public static let transitions: [PaymentStatus: Set<PaymentStatus>] = [
        .processing: [.succeeded, .pending, .failed],
        .pending: [.succeeded, .failed, .cancelled],
        .succeeded: [.partiallyRefunded, .refunded],
        .partiallyRefunded: [.partiallyRefunded, .refunded],
        .failed: [], .cancelled: [], .refunded: [],
    ]

    public func canTransition(to next: PaymentStatus) -> Bool { Self.transitions[self]?.contains(next) ?? false }

    /// The status after moving to `next`, or an error when RULES forbid it.
    public func transition(to next: PaymentStatus) throws(IllegalTransition) -> PaymentStatus {
        guard canTransition(to: next) else { throw IllegalTransition(from: rawValue, to: next.rawValue) }
        return next
    }

    /// The event a payment emits on entering this status.
    public var eventType: String {
        switch self {
        case .processing: "payment.processing"
        case .succeeded: "payment.succeeded"
        case .pending: "payment.pending"
        case .failed: "payment.failed"
        case .cancelled: "payment.timed_out"
        case .partiallyRefunded, .refunded: "payment.refunded"
        }
    }
}

/// A state change the state machine forbids.
public struct IllegalTransition: Error, Sendable, Equatable, CustomStringConvertible {
    public var from: String
    public var to: String

    public init(from: String, to: String) {
        self.from = from
        self.to = to
    }
    public var description: String { "illegal transition \(from) -> \(to)" }
}

/// Why a payment failed (`failure_code`).
public enum FailureCode: String, Sendable, Codable {
    case limitExceeded = "limit_exceeded"
    case riskBlocked = "risk_blocked"
    case channelDeclined = "channel_declined"
    case noChannel = "no_channel"
    case channelError = "channel_error"
    case timeout
    case tierForbidden = "tier_forbidden"
    /// The order was already paid by another payment.
    case orderAlreadyPaid = "order_already_paid"
    /// The order was cancelled (its pending payment timed out).
    case orderCancelled = "order_cancelled"
}
