import Foundation

/// The UTC day and month windows a payment counts in (RULES "Transaction limits").
public struct LimitWindows: Sendable, Equatable {
    /// `yyyyMMdd`.
    public var day: String
    /// `yyyyMM`.
    public var month: String
    /// Seconds until the end of the day and month windows (keys expire a little after that).
    public var secondsToDayEnd: Int
    public var secondsToMonthEnd: Int
    /// Where the day and month windows start, and where the month ends (for the durable record).
    public var dayStart: Date
    public var dayEnd: Date
    public var monthStart: Date
    public var monthEnd: Date

    public init(at date: Date) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day], from: date)
        // Not `String(format:)`: it parses its format through Foundation on every command.
        func padded(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        month = padded(parts.year!, 4) + padded(parts.month!, 2)
        day = month + padded(parts.day!, 2)
        let startOfDay = calendar.startOfDay(for: date)
        let nextDay = calendar.date(byAdding: .day, value: 1, to: startOfDay)!
        let startOfMonth = calendar.date(from: DateComponents(year: parts.year, month: parts.month, day: 1))!
        let nextMonth = calendar.date(byAdding: .month, value: 1, to: startOfMonth)!
        dayStart = startOfDay
        dayEnd = nextDay
        monthStart = startOfMonth
        monthEnd = nextMonth
        secondsToDayEnd = max(1, Int(nextDay.timeIntervalSince(date).rounded(.up)))
        secondsToMonthEnd = max(1, Int(nextMonth.timeIntervalSince(date).rounded(.up)))
    }
}
