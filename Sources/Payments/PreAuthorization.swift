/// A pre-authorization's status; the allowed transitions are data, as for payments.
public enum PreAuthStatus: String, Sendable, Codable, CaseIterable {
    case processing, authorized, failed
    case partiallyCaptured = "partially_captured"
    case captured, cancelled, expired

    /// RULES "Payments and pre-authorizations".
    public static let transitions: [PreAuthStatus: Set<PreAuthStatus>] = [
        .processing: [.authorized, .failed],
        .authorized: [.partiallyCaptured, .captured, .cancelled, .expired],
        .partiallyCaptured: [.partiallyCaptured, .captured, .cancelled, .expired],
        .failed: [], .captured: [], .cancelled: [], .expired: [],
    ]

    public func canTransition(to next: PreAuthStatus) -> Bool { Self.transitions[self]?.contains(next) ?? false }

    public func transition(to next: PreAuthStatus) throws(IllegalTransition) -> PreAuthStatus {
        guard canTransition(to: next) else { throw IllegalTransition(from: rawValue, to: next.rawValue) }
        return next
    }

    /// Whether captures, cancel and expiry still apply.
    public var isOpen: Bool { self == .authorized || self == .partiallyCaptured }
}

/// The money of one pre-authorization, and the capture rules (partial and repeated captures up to
/// the authorized amount; `final` or capturing all that remains ends it and releases the rest).
public struct PreAuthorizationAmounts: Sendable, Equatable {
    public private(set) var status: PreAuthStatus
    public let authorized: Int64
    public private(set) var captured: Int64 = 0
    public private(set) var captureCount = 0

    public init(authorized: Int64, status: PreAuthStatus = .authorized) {
        self.authorized = authorized
        self.status = status
    }

    /// The money of a stored pre-authorization.
    public init(authorized: Int64, captured: Int64, captureCount: Int, status: PreAuthStatus) {
        self.authorized = authorized
        self.captured = captured
        self.captureCount = captureCount
        self.status = status
    }

    public var remaining: Int64 { authorized - captured }

    public enum CaptureError: Error, Sendable, Equatable {
        case invalidState(PreAuthStatus)
        case invalidAmount
        case exceedsRemaining(remaining: Int64)
    }

    /// What a capture did: the amount captured now and the amount released (not to be captured).
    public struct Capture: Sendable, Equatable {
        public let amount: Int64
        public let released: Int64

        public init(amount: Int64, released: Int64) {
            self.amount = amount
            self.released = released
        }
    }

    /// Captures `amount` (default: all that remains); `final` releases what remains after it.
    public mutating func capture(_ amount: Int64? = nil, final: Bool = false) throws(CaptureError) -> Capture {
        guard status.isOpen else { throw .invalidState(status) }
        let amount = amount ?? remaining
        guard amount > 0 else { throw .invalidAmount }
        guard amount <= remaining else { throw .exceedsRemaining(remaining: remaining) }
        captured += amount
        captureCount += 1
        let ends = final || remaining == 0
        status = ends ? .captured : .partiallyCaptured
        return Capture(amount: amount, released: ends ? remaining : 0)
    }

    /// Cancel or expiry: ends it and returns the amount released (what was not captured).
    public mutating func close(as outcome: PreAuthStatus) throws(CaptureError) -> Int64 {
        guard status.isOpen, outcome == .cancelled || outcome == .expired else { throw .invalidState(status) }
        status = outcome
        return remaining
    }
}
