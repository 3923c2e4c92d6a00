import CivilTime
import Contract
import Foundation
import Payments
import Testing

/// `LimitWindows` and `Timestamp.format` compute with `CivilTime` instead of Foundation's
/// `Calendar` and `ISO8601FormatStyle`; each must give what Foundation gives, for every instant:
/// a payment counted in another day's window, or a timestamp a millisecond off, would be a
/// silent change of the stored record.
@Suite struct CivilTimeTests {
    /// The windows as they were computed before (`Calendar`, UTC): the definition.
    static func calendarWindows(at date: Date) -> LimitWindows { LimitWindows(calendarAt: date) }

    /// Instants on and around the edges: midnights, month and year ends, leap days, the reference
    /// date (2001-01-01), and a hair before and after each.
    static var edges: [Date] {
        let midnights: [(Int, Int, Int)] = [(1970, 1, 1), (2000, 2, 29), (2000, 3, 1), (2001, 1, 1), (2024, 2, 29), (2024, 12, 31),
                                            (2025, 1, 1), (2026, 12, 7), (2031, 6, 30), (2100, 2, 28), (2100, 3, 1), (2400, 2, 29)]
        var dates: [Date] = []
        for (year, month, day) in midnights {
            let seconds = Double(CivilTime.days(fromCivil: Int64(year), month: month, day: day) * 86_400)
            for offset in [0, 0.000_001, -0.000_001, 0.000_5, -0.000_5, 0.001, -0.001, 0.999, -0.999, 1, -1, 86_399.999, 43_200] {
                dates.append(Date(timeIntervalSince1970: seconds + offset))
            }
            dates.append(Date(timeIntervalSinceReferenceDate: Date(timeIntervalSince1970: seconds).timeIntervalSinceReferenceDate.nextDown))
            dates.append(Date(timeIntervalSinceReferenceDate: Date(timeIntervalSince1970: seconds).timeIntervalSinceReferenceDate.nextUp))
        }
        return dates
    }

    /// Seeded instants from 1970 to 2200, whole milliseconds and arbitrary fractions alike.
    static func randomDates(count: Int) -> [Date] {
        var random = CanonicalJSONTests.Random(state: 0x5EED_C1F1)
        return (0..<count).map { index in
            let millis = Int64(random.next() % 7_258_118_400_000)  // up to 2200-01-01
            let fraction = index % 2 == 0 ? 0 : Double(random.next() % 1_000_000) / 1_000_000_000
            return Date(timeIntervalSince1970: Double(millis) / 1000 + fraction)
        }
    }

    @Test func theWindowsAreTheCalendarsOnEveryEdge() {
        let julian = [-12_219_292_800.0, -12_219_292_800.5, -62_135_596_800.0].map { Date(timeIntervalSince1970: $0) }
        for date in Self.edges + julian {
            #expect(LimitWindows(at: date) == Self.calendarWindows(at: date), "at \(date.timeIntervalSince1970)")
        }
    }

    @Test func theWindowsAreTheCalendarsOnTwentyThousandInstants() {
        var differing: [Double] = []
        for date in Self.randomDates(count: 20_000) where LimitWindows(at: date) != Self.calendarWindows(at: date) {
            differing.append(date.timeIntervalSince1970)
        }
        #expect(differing.isEmpty, "first: \(differing.prefix(5))")
    }

    @Test func aTimestampIsFoundationsTextOnEveryEdge() {
        for date in Self.edges {
            #expect(Timestamp.format(date) == Timestamp.foundationFormat(date), "at \(date.timeIntervalSince1970)")
        }
    }

    @Test func aTimestampIsFoundationsTextOnFiftyThousandInstants() {
        var differing: [String] = []
        for date in Self.randomDates(count: 50_000) where Timestamp.format(date) != Timestamp.foundationFormat(date) {
            differing.append("\(date.timeIntervalSince1970): \(Timestamp.format(date)) vs \(Timestamp.foundationFormat(date))")
        }
        #expect(differing.isEmpty, "first: \(differing.prefix(3))")
    }

    @Test func aTimestampBeforeTheEpochAndOutsideFourDigitYears() {
        for seconds in [-1.0, -0.0005, -86_400.25, -2_208_988_800.5, -11_676_096_000.5, -12_219_292_800.0, -62_135_596_800.0,
                        253_402_300_799.999, 253_402_300_800.0] {
            let date = Date(timeIntervalSince1970: seconds)
            #expect(Timestamp.format(date) == Timestamp.foundationFormat(date), "at \(seconds)")
        }
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_796_083_170.25)) == "2026-11-30T23:59:30.250Z")
    }

    @Test func civilDaysRoundTrip() {
        for days in stride(from: Int64(-800_000), through: 800_000, by: 37) {
            let (year, month, day) = CivilTime.civil(fromDays: days)
            #expect(CivilTime.days(fromCivil: year, month: month, day: day) == days)
        }
        #expect(CivilTime.floorDiv(-1, 86_400) == -1)
        #expect(CivilTime.floorDiv(86_400, 86_400) == 1)
        #expect(CivilTime.padded(7, 3) == "007")
        #expect(CivilTime.padded(12_345, 3) == "12345")
    }
}
