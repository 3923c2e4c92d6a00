/// A column of the payment export, in file order.
public enum ExportColumn: Int, CaseIterable, Sendable {
    case paymentNo, orderNo, createdAt, updatedAt, status, currency, amount, refundedAmount, channelFee, channel, payMethod,
         country, preAuthNo, subject, failureCode, failureMessage, metadata

    /// The header's name.
    public var name: String {
        switch self {
        case .paymentNo: "payment_no"
        case .orderNo: "order_no"
        case .createdAt: "created_at"
        case .updatedAt: "updated_at"
        case .status: "status"
        case .currency: "currency"
        case .amount: "amount"
        case .refundedAmount: "refunded_amount"
        case .channelFee: "channel_fee"
        case .channel: "channel"
        case .payMethod: "pay_method"
        case .country: "country"
        case .preAuthNo: "pre_auth_no"
        case .subject: "subject"
        case .failureCode: "failure_code"
        case .failureMessage: "failure_message"
        case .metadata: "metadata"
        }
    }

    /// Text a merchant or its customer chose: guarded against spreadsheet formulas.
    public var isFreeText: Bool { self == .orderNo || self == .subject || self == .failureMessage || self == .metadata }

    /// Integer minor units, written as decimals by the currency's exponent.
    public var isAmount: Bool { self == .amount || self == .refundedAmount || self == .channelFee }
}

/// One payment's cells for the export: UTF-8 text per column (nil: empty), amounts as integer
/// minor units, and the currency that scales them. The store's rows give their bytes as read,
/// without a `String` per cell; `ExportRow` gives them from values.
public protocol ExportCells {
    var currency: Currency { get }
    func text(_ column: ExportColumn) -> ArraySlice<UInt8>?
    func minorUnits(_ column: ExportColumn) -> Int64
}

/// One payment as a row of the export file, from values.
public struct ExportRow: Sendable, Equatable, ExportCells {
    public var paymentNo: String
    public var orderNo: String
    /// ISO 8601 UTC, as written.
    public var createdAt: String
    public var updatedAt: String
    public var status: String
    public var currency: Currency
    public var amount: Int64
    public var refundedAmount: Int64
    public var channelFee: Int64
    public var channel: String?
    public var payMethod: String
    public var country: String
    public var preAuthNo: String?
    public var subject: String?
    public var failureCode: String?
    public var failureMessage: String?
    /// The metadata object as JSON text.
    public var metadata: String

    public init(paymentNo: String, orderNo: String, createdAt: String, updatedAt: String, status: String, currency: Currency,
                amount: Int64, refundedAmount: Int64, channelFee: Int64, channel: String?, payMethod: String, country: String,
                preAuthNo: String?, subject: String?, failureCode: String?, failureMessage: String?, metadata: String) {
        self.paymentNo = paymentNo
        self.orderNo = orderNo
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.status = status
        self.currency = currency
        self.amount = amount
        self.refundedAmount = refundedAmount
        self.channelFee = channelFee
        self.channel = channel
        self.payMethod = payMethod
        self.country = country
        self.preAuthNo = preAuthNo
        self.subject = subject
        self.failureCode = failureCode
        self.failureMessage = failureMessage
        self.metadata = metadata
    }

    public func text(_ column: ExportColumn) -> ArraySlice<UInt8>? {
        let value: String? = switch column {
        case .paymentNo: paymentNo
        case .orderNo: orderNo
        case .createdAt: createdAt
        case .updatedAt: updatedAt
        case .status: status
        case .currency: currency.rawValue
        case .channel: channel
        case .payMethod: payMethod
        case .country: country
        case .preAuthNo: preAuthNo
        case .subject: subject
        case .failureCode: failureCode
        case .failureMessage: failureMessage
        case .metadata: metadata
        case .amount, .refundedAmount, .channelFee: nil
        }
        return value.map { Array($0.utf8)[...] }
    }

    public func minorUnits(_ column: ExportColumn) -> Int64 {
        switch column {
        case .amount: amount
        case .refundedAmount: refundedAmount
        case .channelFee: channelFee
        default: 0
        }
    }
}

/// The payment export's file format (RULES "Export"), Excel-compatible: UTF-8 with a BOM, CRLF
/// line endings, RFC 4180 quoting, amounts as decimals by the currency's exponent (JPY none, BTC
/// 8), times in ISO 8601 UTC. Free-text cells that start with `=`, `+`, `-`, `@`, tab or CR get a
/// leading `'` so a spreadsheet does not run them as formulas; amounts are never guarded and never
/// negative (refunds have their own column). Bytes are appended to a buffer: a chunk of rows is
/// built without a string per cell.
public enum ExportCSV {
    /// The fixed column list (README "Payment export").
    public static let columns = ExportColumn.allCases.map(\.name)

    public static let byteOrderMark: [UInt8] = [0xEF, 0xBB, 0xBF]

    /// The file's start: the BOM and the header line.
    public static func head() -> [UInt8] {
        var bytes = byteOrderMark
        for (index, name) in columns.enumerated() {
            if index > 0 { bytes.append(comma) }
            bytes.append(contentsOf: name.utf8)
        }
        bytes.append(contentsOf: crlf)
        return bytes
    }

    public static func append(_ row: some ExportCells, to bytes: inout [UInt8]) {
        for column in ExportColumn.allCases {
            if column.rawValue > 0 { bytes.append(comma) }
            if column.isAmount {
                decimal(row.minorUnits(column), exponent: row.currency.exponent, to: &bytes)
            } else if let text = row.text(column) {
                cell(text, freeText: column.isFreeText, to: &bytes)
            }
        }
        bytes.append(contentsOf: crlf)
    }

    /// One cell: guarded when `freeText` and it starts like a formula, quoted when it holds a quote,
    /// comma, CR or LF (quotes doubled).
    public static func cell(_ text: ArraySlice<UInt8>, freeText: Bool = false, to bytes: inout [UInt8]) {
        text.withUnsafeBufferPointer { text in
            let guarded = freeText && text.first.map(startsFormula) == true
            var quoted = false
            for byte in text where byte == quote || byte == comma || byte == cr || byte == lf {
                quoted = true
                break
            }
            guard quoted || guarded else {
                bytes.append(contentsOf: text)
                return
            }
            if quoted { bytes.append(quote) }
            if guarded { bytes.append(apostrophe) }
            if quoted {
                for byte in text {
                    if byte == quote { bytes.append(quote) }
                    bytes.append(byte)
                }
            } else {
                bytes.append(contentsOf: text)
            }
            if quoted { bytes.append(quote) }
        }
    }

    /// `=`, `+`, `-`, `@`, tab or CR: what a spreadsheet would run as a formula.
    static func startsFormula(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "="), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "@"), 9, 13: true
        default: false
        }
    }

    /// One cell as text (tests, documentation).
    public static func cell(_ text: String, freeText: Bool = false) -> String {
        var bytes: [UInt8] = []
        cell(Array(text.utf8)[...], freeText: freeText, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Minor units as a decimal by `exponent` (`12345`, 2 -> `123.45`; JPY: no point), as bytes.
    public static func decimal(_ minorUnits: Int64, exponent: Int, to bytes: inout [UInt8]) {
        var magnitude = minorUnits.magnitude
        if minorUnits < 0 { bytes.append(UInt8(ascii: "-")) }
        // Digits, least significant first, at least one more than the exponent ("0.05").
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 40) { digits in
            var count = 0
            repeat {
                digits[count] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            } while magnitude > 0 || count <= exponent
            for position in stride(from: count - 1, through: 0, by: -1) {
                bytes.append(digits[position])
                if position == exponent, exponent > 0 { bytes.append(UInt8(ascii: ".")) }
            }
        }
    }

    /// A decimal as text (tests).
    public static func decimal(_ minorUnits: Int64, currency: Currency) -> String {
        var bytes: [UInt8] = []
        decimal(minorUnits, exponent: currency.exponent, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    static let comma = UInt8(ascii: ","), quote = UInt8(ascii: "\""), cr: UInt8 = 13, lf: UInt8 = 10
    static let apostrophe = UInt8(ascii: "'")
    static let crlf: [UInt8] = [13, 10]
}
