import CivilTime
import Foundation

/// RFC 3339 UTC timestamps with milliseconds, as every resource and event carries them.
public enum Timestamp {
    /// `2026-12-07T12:36:37.205Z`. The same text as `Date.ISO8601FormatStyle(includingFractionalSeconds:
    /// true, timeZone: .gmt)` (`foundationFormat`), which it replaces on the hot path: the
    /// milliseconds are the fraction of the date's seconds since 2001-01-01 (how `Date` holds it),
    /// truncated, as Foundation takes them.
    public static func format(_ date: Date) -> String {
        let sinceReference = date.timeIntervalSinceReferenceDate
        guard sinceReference.isFinite, abs(sinceReference) < 1e14 else { return foundationFormat(date) }
        let whole = sinceReference.rounded(.down)
        let seconds = Int64(whole) + 978_307_200
        guard civilYears.contains(seconds) else { return foundationFormat(date) }
        return CivilTime.timestamp(seconds: seconds, fraction: Int64((sinceReference - whole) * 1000), digits: 3)
    }

    /// The seconds (since 1970) of the years `format` writes itself, 1600...9999: Foundation's
    /// Gregorian calendar is Julian before October 1582.
    private static let civilYears = CivilTime.days(fromCivil: 1600, month: 1, day: 1) * 86_400
        ..< CivilTime.days(fromCivil: 10_000, month: 1, day: 1) * 86_400

    /// Foundation's text for `format` (the definition it is tested against; years outside 1600...9999).
    public static func foundationFormat(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt))
    }

    public static func parse(_ text: String) -> Date? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt).parse(text))
            ?? (try? Date.ISO8601FormatStyle(timeZone: .gmt).parse(text))
    }
}
