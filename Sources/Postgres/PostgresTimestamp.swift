import CivilTime
import Foundation

/// Converts `Date` to and from PostgreSQL's ISO text form, to the microsecond (PostgreSQL's
/// precision), without Foundation formatters (they are slow and keep only milliseconds).
enum PostgresTimestamp {
    /// `2026-11-25T01:02:03.123456Z`: always UTC, always six fraction digits.
    static func format(_ date: Date) -> String {
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        let seconds = CivilTime.floorDiv(micros, 1_000_000)
        return CivilTime.timestamp(seconds: seconds, fraction: micros - seconds * 1_000_000, digits: 6)
    }

    /// Parses what PostgreSQL prints with `DateStyle=ISO` for `timestamptz`, `timestamp` (taken as
    /// UTC) and `date` (midnight UTC): `2026-11-25 01:02:03.123456+00`, `...+05:30`, `2026-11-25`.
    /// Also accepts a `T` separator and `Z`. `infinity` maps to `Date.distantFuture`.
    static func parse(_ text: String) -> Date? {
        switch text {
        case "infinity": return .distantFuture
        case "-infinity": return .distantPast
        default: break
        }
        var scanner = Scanner(Array(text.utf8))
        guard let year = scanner.digits(min: 4, max: 7), scanner.take(UInt8(ascii: "-")),
              let month = scanner.digits(min: 2, max: 2), scanner.take(UInt8(ascii: "-")),
              let day = scanner.digits(min: 2, max: 2),
              (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var seconds = CivilTime.days(fromCivil: year, month: Int(month), day: Int(day)) * 86_400
        var micros: Int64 = 0
        if scanner.take(UInt8(ascii: " ")) || scanner.take(UInt8(ascii: "T")) {
            guard let hour = scanner.digits(min: 2, max: 2), scanner.take(UInt8(ascii: ":")),
                  let minute = scanner.digits(min: 2, max: 2), scanner.take(UInt8(ascii: ":")),
                  let second = scanner.digits(min: 2, max: 2),
                  hour <= 24, minute < 60, second < 61
            else { return nil }
            seconds += hour * 3600 + minute * 60 + second
            if scanner.take(UInt8(ascii: ".")) {
                var scale: Int64 = 100_000
                var any = false
                while let digit = scanner.digit() {
                    micros += Int64(digit) * scale
                    scale /= 10
                    any = true
                }
                guard any else { return nil }
            }
            if scanner.take(UInt8(ascii: "Z")) {
                // UTC
            } else if let sign = scanner.sign() {
                guard let offsetHours = scanner.digits(min: 2, max: 2) else { return nil }
                var offset = offsetHours * 3600
                _ = scanner.take(UInt8(ascii: ":"))
                if let offsetMinutes = scanner.digits(min: 2, max: 2) {
                    offset += offsetMinutes * 60
                    _ = scanner.take(UInt8(ascii: ":"))
                    if let offsetSeconds = scanner.digits(min: 2, max: 2) { offset += offsetSeconds }
                }
                seconds -= sign * offset
            }
        }
        guard scanner.atEnd else { return nil }  // e.g. " BC"
        return Date(timeIntervalSince1970: Double(seconds) + Double(micros) / 1_000_000)
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        var atEnd: Bool { index == bytes.count }

        mutating func take(_ byte: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        mutating func digit() -> Int? {
            guard index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) else { return nil }
            defer { index += 1 }
            return Int(bytes[index] - UInt8(ascii: "0"))
        }

        mutating func digits(min: Int, max: Int) -> Int64? {
            let start = index
            var value: Int64 = 0
            while index - start < max, let d = digit() { value = value * 10 + Int64(d) }
            if index - start < min {
                index = start
                return nil
            }
            return value
        }

        mutating func sign() -> Int64? {
            if take(UInt8(ascii: "+")) { return 1 }
            if take(UInt8(ascii: "-")) { return -1 }
            return nil
        }
    }
}
