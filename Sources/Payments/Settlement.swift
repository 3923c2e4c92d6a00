import Contract
import Foundation

/// One UTC calendar day (`YYYY-MM-DD`): what a settlement settles and an export's range names.
public struct UTCDay: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// 00:00:00 UTC of the day.
    public let start: Date

    static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    /// The day `date` falls in.
    public init(containing date: Date) {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        let day = seconds >= 0 ? seconds / 86_400 : -((-seconds + 86_399) / 86_400)
        start = Date(timeIntervalSince1970: TimeInterval(day * 86_400))
    }

    /// Strict `YYYY-MM-DD` of a real date (`2026-02-30` is nil).
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count == 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
              bytes.enumerated().allSatisfy({ $0.offset == 4 || $0.offset == 7 || (48...57).contains($0.element) }),
              let year = Int(text.prefix(4)), let month = Int(text.dropFirst(5).prefix(2)), let day = Int(text.suffix(2)),
              year >= 1970, (1...12).contains(month), (1...31).contains(day),
              let date = Self.calendar.date(from: DateComponents(year: year, month: month, day: day)),
              Self.calendar.component(.day, from: date) == day, Self.calendar.component(.month, from: date) == month else {
            return nil
        }
        start = date
    }

    /// 00:00:00 UTC of the next day: the day is `start ..< end`.
    public var end: Date { start.addingTimeInterval(86_400) }

    public func adding(days: Int) -> UTCDay { UTCDay(containing: start.addingTimeInterval(TimeInterval(days) * 86_400)) }

    /// Days from `self` to `other` (positive when `other` is later).
    public func days(to other: UTCDay) -> Int { Int((other.start.timeIntervalSince(start) / 86_400).rounded()) }

    /// ISO weekday: 1 = Monday ... 7 = Sunday.
    public var weekday: Int {
        let days = Int64(start.timeIntervalSince1970 / 86_400)
        // 1970-01-01 was a Thursday (4).
        return Int(((days % 7) + 7 + 3) % 7) + 1
    }

    public var description: String { String(Timestamp.format(start).prefix(10)) }

    public static func < (a: UTCDay, b: UTCDay) -> Bool { a.start < b.start }
}

/// Which days pay out (RULES "Settlement": Monday to Friday less a configured holiday list).
/// Configuration, hot-reloaded: the settings document `business_calendar`.
public struct BusinessCalendar: Sendable, Equatable {
    /// ISO weekdays that are not business days (6 = Saturday, 7 = Sunday).
    public var weekend: Set<Int>
    public var holidays: Set<UTCDay>

    public static let weekdayNames = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
    public static let standard = BusinessCalendar(weekend: [6, 7], holidays: [])

    public init(weekend: Set<Int>, holidays: Set<UTCDay>) {
        self.weekend = weekend
        self.holidays = holidays
    }

    public func isBusinessDay(_ day: UTCDay) -> Bool { !weekend.contains(day.weekday) && !holidays.contains(day) }

    /// The first business day on or after `day`. Terminates: a valid calendar has a weekday off
    /// the weekend, and finitely many holidays.
    public func businessDay(onOrAfter day: UTCDay) -> UTCDay {
        var day = day
        while !isBusinessDay(day) { day = day.adding(days: 1) }
        return day
    }

    /// When a day's settlement is paid out: T+1 the next business day, T+0 the same business day
    /// (the next one if the day is not), D+0 the same calendar day.
    public func payoutDate(for day: UTCDay, cycle: SettlementCycle) -> UTCDay {
        switch cycle {
        case .tPlus1: businessDay(onOrAfter: day.adding(days: 1))
        case .tPlus0: businessDay(onOrAfter: day)
        case .dPlus0: day
        }
    }

    /// The settings document: `{"weekend": ["saturday", "sunday"], "holidays": ["2026-12-25"]}`.
    public static func parse(_ json: JSONValue) -> Result<BusinessCalendar, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var errors: [FieldError] = []
        var weekend: Set<Int> = [6, 7]
        if let value = object["weekend"] {
            if case .array(let items) = value {
                weekend = []
                for (index, item) in items.enumerated() {
                    if case .string(let name) = item, let position = weekdayNames.firstIndex(of: name.lowercased()) {
                        weekend.insert(position + 1)
                    } else {
                        errors.append(FieldError("weekend[\(index)]", "must be a weekday name (monday ... sunday)"))
                    }
                }
                if weekend.count >= 7 { errors.append(FieldError("weekend", "must leave at least one business weekday")) }
            } else {
                errors.append(FieldError("weekend", "must be an array of weekday names"))
            }
        }
        var holidays: Set<UTCDay> = []
        if let value = object["holidays"] {
            if case .array(let items) = value, items.count <= 10_000 {
                for (index, item) in items.enumerated() {
                    if case .string(let text) = item, let day = UTCDay(text) { holidays.insert(day) } else {
                        errors.append(FieldError("holidays[\(index)]", "must be a date YYYY-MM-DD"))
                    }
                }
            } else {
                errors.append(FieldError("holidays", "must be an array of at most 10000 dates YYYY-MM-DD"))
            }
        }
        for key in object.keys.sorted() where key != "weekend" && key != "holidays" {
            errors.append(FieldError(TextRules.forLog(key, limit: 40), "is not a known field"))
        }
        guard errors.isEmpty else { return .failure(ValidationFailure(errors)) }
        return .success(BusinessCalendar(weekend: weekend, holidays: holidays))
    }

    public var json: JSONValue {
        .object(["weekend": .array(weekend.sorted().map { .string(Self.weekdayNames[$0 - 1]) }),
                 "holidays": .array(holidays.sorted().map { .string($0.description) })])
    }
}

/// A settlement's money (RULES "Settlement"): gross = the day's payments - its refunds; fee =
/// gross x the tier's rate, half-up in integer basis points (away from zero, so a negative gross
/// gives a symmetric negative fee); net = gross - fee.
public struct SettlementFigures: Sendable, Equatable {
    public let gross: Int64
    public let fee: Int64
    public let net: Int64

    /// Figures as stored.
    public init(gross: Int64, fee: Int64, net: Int64) {
        self.gross = gross
        self.fee = fee
        self.net = net
    }

    /// Nil when an amount would overflow.
    public init?(payments: Int64, refunds: Int64, feeBasisPoints: Int64) {
        let (gross, overflow) = payments.subtractingReportingOverflow(refunds)
        guard !overflow, let fee = MoneyMath.basisPoints(gross, feeBasisPoints) else { return nil }
        let (net, netOverflow) = gross.subtractingReportingOverflow(fee)
        guard !netOverflow else { return nil }
        self.gross = gross
        self.fee = fee
        self.net = net
    }
}

/// A settlement (CONTRACT §3): one per merchant, currency and UTC day.
public struct Settlement: Sendable, Equatable, Codable {
    public var settlementId: String
    public var merchantId: String
    public var currency: String
    public var date: String
    public var gross: Int64
    public var fee: Int64
    public var net: Int64
    public var feeBps: Int64
    public var payoutDate: String
    public var paymentCount: Int
    public var refundCount: Int
    public var version: Int
    public var createdAt: String

    enum CodingKeys: String, CodingKey {
        case settlementId = "settlement_id", merchantId = "merchant_id", currency, date, gross, fee, net, feeBps = "fee_bps"
        case payoutDate = "payout_date", paymentCount = "payment_count", refundCount = "refund_count", version
        case createdAt = "created_at"
    }

    public init(settlementId: String, merchantId: String, currency: String, date: String, figures: SettlementFigures, feeBps: Int64,
                payoutDate: String, paymentCount: Int, refundCount: Int, createdAt: String) {
        self.settlementId = settlementId
        self.merchantId = merchantId
        self.currency = currency
        self.date = date
        gross = figures.gross
        fee = figures.fee
        net = figures.net
        self.feeBps = feeBps
        self.payoutDate = payoutDate
        self.paymentCount = paymentCount
        self.refundCount = refundCount
        version = 1
        self.createdAt = createdAt
    }

    /// `stl_` + 26 base32 characters of the merchant, currency and day: a rerun names the same one.
    public static func id(merchantId: String, currency: String, day: UTCDay) -> String {
        "stl_" + Identifiers.base32(Identifiers.digest("settlement|\(merchantId)|\(currency)|\(day)").prefix(16))
    }

    public static let eventType = "settlement.created"
}

/// One payment or refund a settlement holds (its lines add up to its gross).
public struct SettlementLine: Sendable, Equatable, Codable {
    public var kind: String
    public var paymentNo: String
    public var refundNo: String?
    public var amount: Int64
    public var currency: String
    public var createdAt: String

    enum CodingKeys: String, CodingKey {
        case kind, paymentNo = "payment_no", refundNo = "refund_no", amount, currency, createdAt = "created_at"
    }

    public init(kind: String, paymentNo: String, refundNo: String?, amount: Int64, currency: String, createdAt: String) {
        self.kind = kind
        self.paymentNo = paymentNo
        self.refundNo = refundNo
        self.amount = amount
        self.currency = currency
        self.createdAt = createdAt
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind, forKey: .kind)
        try container.encode(paymentNo, forKey: .paymentNo)
        try container.encode(refundNo, forKey: .refundNo)
        try container.encode(amount, forKey: .amount)
        try container.encode(currency, forKey: .currency)
        try container.encode(createdAt, forKey: .createdAt)
    }
}

/// Stored as the settings document `business_calendar` (see `parse` for its shape).
extension BusinessCalendar: Codable {
    public init(from decoder: any Decoder) throws {
        let json = try JSONValue(from: decoder)
        switch Self.parse(json) {
        case .success(let calendar): self = calendar
        case .failure(let failure):
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: failure.summary))
        }
    }

    public func encode(to encoder: any Encoder) throws { try json.encode(to: encoder) }
}
