/// UTC calendar arithmetic on whole days and seconds (proleptic Gregorian, day 0 = 1970-01-01),
/// without Foundation's `Calendar`: the authorize path computes a payment's limit windows and
/// formats its timestamps several times per command, and `Calendar` and `ISO8601FormatStyle`
/// cost about 3% of the worker's CPU doing it.
///
/// Howard Hinnant's `civil_from_days` / `days_from_civil`, exact for every day a `Date` can hold.
public enum CivilTime {
    /// The UTC date of `days` since 1970-01-01.
    public static func civil(fromDays z0: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), Int(month), Int(day))
    }

    /// Days since 1970-01-01 of a UTC date (`month` 1...12; `day` may run past the month's end,
    /// which counts on into the next).
    public static func days(fromCivil year0: Int64, month: Int, day: Int) -> Int64 {
        let year = month <= 2 ? year0 - 1 : year0
        let era = (year >= 0 ? year : year - 399) / 400
        let yoe = year - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// `a / b` rounded toward negative infinity (`b` > 0).
    public static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && a < 0) ? q - 1 : q
    }

    /// `YYYY-MM-DDTHH:MM:SS.<fraction>Z` of `seconds` since 1970-01-01 UTC, the fraction written
    /// with `digits` digits (`fraction` < 10^digits). For years 0...9999.
    public static func timestamp(seconds: Int64, fraction: Int64, digits: Int) -> String {
        let days = floorDiv(seconds, 86_400)
        let secondOfDay = seconds - days * 86_400
        let (year, month, day) = civil(fromDays: days)
        // Written digit by digit into the string's own storage: one allocation, where joining
        // padded pieces made a dozen (1.7% of the authorize worker's CPU).
        // A fraction of 10^digits (Foundation's rounding can give one) is written whole, as `padded` would.
        var fractionWidth = digits, bound: Int64 = 1
        for _ in 0..<digits { bound *= 10 }
        while fraction >= bound {
            fractionWidth += 1
            bound *= 10
        }
        return String(unsafeUninitializedCapacity: 21 + fractionWidth) { text in
            var end = 0
            func put(_ value: Int64, _ width: Int) {
                var rest = value
                for position in stride(from: end + width - 1, through: end, by: -1) {
                    text[position] = UInt8(truncatingIfNeeded: 48 + rest % 10)
                    rest /= 10
                }
                end += width
            }
            func put(_ byte: UInt8) {
                text[end] = byte
                end += 1
            }
            put(year, 4); put(UInt8(ascii: "-")); put(Int64(month), 2); put(UInt8(ascii: "-")); put(Int64(day), 2)
            put(UInt8(ascii: "T")); put(secondOfDay / 3600, 2); put(UInt8(ascii: ":")); put(secondOfDay / 60 % 60, 2)
            put(UInt8(ascii: ":")); put(secondOfDay % 60, 2); put(UInt8(ascii: ".")); put(fraction, fractionWidth); put(UInt8(ascii: "Z"))
            return end
        }
    }

    /// `value` in decimal, left-padded with zeros to `width` digits (not `String(format:)`, which
    /// parses its format through Foundation on every call). For values >= 0.
    public static func padded(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return digits.utf8.count >= width ? digits : String(repeating: "0", count: width - digits.utf8.count) + digits
    }
}
