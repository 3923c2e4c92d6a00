/// The rules of the transaction-limit windows as a pure value (RULES "Transaction limits"): what
/// the Redis scripts of `Store.LimitLedger` implement, stated here so that the rules can be read,
/// tested exhaustively and checked against the scripts.
///
/// Every operation is keyed by the command that caused it, so repeating one changes nothing.
/// Invariant: a window's used amount stays within 0...limit whatever the order of operations.
public struct LimitLedgerModel: Sendable, Equatable {
    /// One reservation: what it counted, where, and what became of it.
    public struct Reservation: Sendable, Equatable {
        public var amount: Int64
        public var day: String
        public var month: String
        public var captured: Int64 = 0
        public var refunded: Int64 = 0
        public var released = false
    }

    public enum Failure: Error, Sendable, Equatable {
        case exceeded(String)
        case unknownReservation
        case invalidAmount
        case overCapture
        case overRefund
        /// The key is held for another amount (another command reusing it): nothing may pass on it.
        case conflict
    }

    public var limits: EffectiveLimits
    public private(set) var used: [String: Int64] = [:]
    public private(set) var reservations: [String: Reservation] = [:]

    public init(limits: EffectiveLimits) { self.limits = limits }

    static func dayKey(_ day: String) -> String { "d:\(day)" }
    static func monthKey(_ month: String) -> String { "m:\(month)" }

    public func usedToday(_ windows: LimitWindows) -> Int64 { used[Self.dayKey(windows.day)] ?? 0 }
    public func usedThisMonth(_ windows: LimitWindows) -> Int64 { used[Self.monthKey(windows.month)] ?? 0 }

    /// Checks and counts `amount` in today's and this month's windows; a repeated key changes
    /// nothing while it is held, and the same key for another amount is a `conflict`. A released
    /// key counts again: the command that released it rolled back (its transaction did not
    /// commit) and runs again.
    public mutating func reserve(_ key: String, amount: Int64, in windows: LimitWindows) throws(Failure) {
        if let held = reservations[key], !held.released {
            guard held.amount == amount else { throw .conflict }
            return
        }
        guard amount > 0 else { throw .invalidAmount }
        guard amount <= limits.single else { throw .exceeded("single") }
        let day = Self.dayKey(windows.day), month = Self.monthKey(windows.month)
        guard (used[day] ?? 0) <= limits.daily - amount else { throw .exceeded("daily") }
        guard (used[month] ?? 0) <= limits.monthly - amount else { throw .exceeded("monthly") }
        used[day, default: 0] += amount
        used[month, default: 0] += amount
        reservations[key] = Reservation(amount: amount, day: windows.day, month: windows.month)
    }

    /// Marks part of a reservation captured (a pre-authorization's capture; a payment captures all).
    public mutating func capture(_ key: String, amount: Int64) throws(Failure) {
        guard var reservation = reservations[key], !reservation.released else { throw .unknownReservation }
        guard amount > 0 else { throw .invalidAmount }
        guard amount <= reservation.amount - reservation.captured else { throw .overCapture }
        reservation.captured += amount
        reservations[key] = reservation
    }

    /// Failure, cancel, expiry or timeout: gives back what was not captured, to the windows that
    /// counted it, if they still exist (`currentWindows`: the windows that are current now). Once.
    public mutating func release(_ key: String, currentWindows: LimitWindows) throws(Failure) {
        guard var reservation = reservations[key] else { throw .unknownReservation }
        guard !reservation.released else { return }
        giveBack(reservation.amount - reservation.captured, of: reservation, currentWindows: currentWindows)
        reservation.released = true
        reservations[key] = reservation
    }

    /// A refund gives its amount back only to the windows that counted the payment, and only if they
    /// are still current; never more than was captured and not yet refunded.
    public mutating func refund(_ key: String, amount: Int64, currentWindows: LimitWindows) throws(Failure) {
        guard var reservation = reservations[key] else { throw .unknownReservation }
        guard amount > 0 else { throw .invalidAmount }
        guard amount <= reservation.captured - reservation.refunded else { throw .overRefund }
        giveBack(amount, of: reservation, currentWindows: currentWindows)
        reservation.refunded += amount
        reservations[key] = reservation
    }

    private mutating func giveBack(_ amount: Int64, of reservation: Reservation, currentWindows: LimitWindows) {
        guard amount > 0 else { return }
        if reservation.day == currentWindows.day {
            used[Self.dayKey(reservation.day), default: 0] -= amount
        }
        if reservation.month == currentWindows.month {
            used[Self.monthKey(reservation.month), default: 0] -= amount
        }
    }
}
