import CivilTime
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
        // UTC arithmetic on whole seconds (`CivilTime`), not `Calendar`: the same windows
        // (`CivilTimeTests` compares the two), for a fraction of the cost on every payment. The
        // seconds are taken from the time since 2001 (how `Date` holds it, and `Calendar` reads
        // it), so an instant a hair before midnight stays in its day.
        let second = Int64(date.timeIntervalSinceReferenceDate.rounded(.down)) + 978_307_200
        let dayNumber = CivilTime.floorDiv(second, 86_400)
        let (year, monthOfYear, dayOfMonth) = CivilTime.civil(fromDays: dayNumber)
        // Foundation's Gregorian calendar is Julian before October 1582, and its windows are the definition.
        guard year >= 1600 else {
            self = LimitWindows(calendarAt: date)
            return
        }
        month = CivilTime.padded(year, 4) + CivilTime.padded(Int64(monthOfYear), 2)
        day = month + CivilTime.padded(Int64(dayOfMonth), 2)
        let firstOfMonth = CivilTime.days(fromCivil: year, month: monthOfYear, day: 1)
        let firstOfNextMonth = monthOfYear == 12 ? CivilTime.days(fromCivil: year + 1, month: 1, day: 1)
            : CivilTime.days(fromCivil: year, month: monthOfYear + 1, day: 1)
        dayStart = Date(timeIntervalSince1970: Double(dayNumber * 86_400))
        dayEnd = Date(timeIntervalSince1970: Double((dayNumber + 1) * 86_400))
        monthStart = Date(timeIntervalSince1970: Double(firstOfMonth * 86_400))
        monthEnd = Date(timeIntervalSince1970: Double(firstOfNextMonth * 86_400))
        secondsToDayEnd = max(1, Int(dayEnd.timeIntervalSince(date).rounded(.up)))
        secondsToMonthEnd = max(1, Int(monthEnd.timeIntervalSince(date).rounded(.up)))
    }

    /// The windows as `Calendar` (UTC) computes them: the definition `init(at:)` follows (and
    /// takes before 1600).
    public init(calendarAt date: Date) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day], from: date)
        month = CivilTime.padded(Int64(parts.year!), 4) + CivilTime.padded(Int64(parts.month!), 2)
        day = month + CivilTime.padded(Int64(parts.day!), 2)
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
