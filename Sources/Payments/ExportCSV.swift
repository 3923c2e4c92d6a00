/// One payment as a row of the export file.
public struct ExportRow: Sendable, Equatable {
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
}

/// The payment export's file format (RULES "Export"), Excel-compatible: UTF-8 with a BOM, CRLF
/// line endings, RFC 4180 quoting, amounts as decimals by the currency's exponent (JPY none, BTC
/// 8), times in ISO 8601 UTC. Free-text cells that start with `=`, `+`, `-`, `@`, tab or CR get a
/// leading `'` so a spreadsheet does not run them as formulas; amounts are never guarded and never
/// negative (refunds have their own column). Bytes are appended to a buffer: a chunk of rows is
/// built without a string per cell.
public enum ExportCSV {
    /// The fixed column list (README "Payment export").
    public static let columns = [
        "payment_no", "order_no", "created_at", "updated_at", "status", "currency", "amount", "refunded_amount",
        "channel_fee", "channel", "pay_method", "country", "pre_auth_no", "subject", "failure_code", "failure_message",
        "metadata",
    ]

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

    public static func append(_ row: borrowing ExportRow, to bytes: inout [UInt8]) {
        cell(row.paymentNo, to: &bytes)
        bytes.append(comma); cell(row.orderNo, freeText: true, to: &bytes)
        bytes.append(comma); cell(row.createdAt, to: &bytes)
        bytes.append(comma); cell(row.updatedAt, to: &bytes)
        bytes.append(comma); cell(row.status, to: &bytes)
        bytes.append(comma); bytes.append(contentsOf: row.currency.rawValue.utf8)
        bytes.append(comma); bytes.append(contentsOf: row.currency.format(row.amount).utf8)
        bytes.append(comma); bytes.append(contentsOf: row.currency.format(row.refundedAmount).utf8)
        bytes.append(comma); bytes.append(contentsOf: row.currency.format(row.channelFee).utf8)
        bytes.append(comma); cell(row.channel ?? "", to: &bytes)
        bytes.append(comma); cell(row.payMethod, to: &bytes)
        bytes.append(comma); cell(row.country, to: &bytes)
        bytes.append(comma); cell(row.preAuthNo ?? "", to: &bytes)
        bytes.append(comma); cell(row.subject ?? "", freeText: true, to: &bytes)
        bytes.append(comma); cell(row.failureCode ?? "", to: &bytes)
        bytes.append(comma); cell(row.failureMessage ?? "", freeText: true, to: &bytes)
        bytes.append(comma); cell(row.metadata, freeText: true, to: &bytes)
        bytes.append(contentsOf: crlf)
    }

    /// One cell: guarded when `freeText` and it starts like a formula, quoted when it holds a quote,
    /// comma, CR or LF (quotes doubled).
    public static func cell(_ text: borrowing String, freeText: Bool = false, to bytes: inout [UInt8]) {
        text.utf8.withContiguousStorageIfAvailable { utf8 in
            let guarded = freeText && utf8.first.map(formulaStarts.contains) == true
            let quoted = utf8.contains { $0 == quote || $0 == comma || $0 == cr || $0 == lf }
            if quoted { bytes.append(quote) }
            if guarded { bytes.append(apostrophe) }
            if quoted {
                for byte in utf8 {
                    if byte == quote { bytes.append(quote) }
                    bytes.append(byte)
                }
            } else {
                bytes.append(contentsOf: utf8)
            }
            if quoted { bytes.append(quote) }
        } ?? cell(String(decoding: Array(text.utf8), as: UTF8.self), freeText: freeText, to: &bytes)
    }

    /// One cell as text (tests, documentation).
    public static func cell(_ text: String, freeText: Bool = false) -> String {
        var bytes: [UInt8] = []
        cell(text, freeText: freeText, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    static let comma = UInt8(ascii: ","), quote = UInt8(ascii: "\""), cr: UInt8 = 13, lf: UInt8 = 10
    static let apostrophe = UInt8(ascii: "'")
    static let crlf: [UInt8] = [13, 10]
    static let formulaStarts: Set<UInt8> = [UInt8(ascii: "="), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "@"), 9, 13]
}
