import Contract
import Foundation

extension FieldReader {
    /// An optional `YYYY-MM-DD` UTC day.
    mutating func optionalDay(_ name: String) -> UTCDay? {
        guard let value = object[name], value != .null else { return nil }
        guard case .string(let text) = value, let day = UTCDay(text) else {
            errors.append(FieldError(name, "must be a date YYYY-MM-DD"))
            return nil
        }
        return day
    }

    mutating func day(_ name: String) -> UTCDay? {
        guard object[name] != nil, object[name] != .null else {
            errors.append(FieldError(name, "is required"))
            return nil
        }
        return optionalDay(name)
    }

    /// `now`, which moves time only in sandbox mode.
    mutating func sandboxNow(sandbox: Bool) -> Date? {
        let now = optionalTime("now")
        if now != nil, !sandbox {
            errors.append(FieldError("now", "moves time only in sandbox mode (PAYFLEET_SANDBOX); this deployment runs on the real clock"))
        }
        return now
    }
}

/// `settlement.run`: settle one UTC day (default yesterday) for every merchant with auto-settlement
/// on. `after` continues a fan-out past that merchant id; `now` (sandbox mode) moves the clock.
public struct SettlementRunRequest: Sendable, Equatable, Codable {
    public var date: String?
    public var now: String?
    public var after: String?

    public init(date: String? = nil, now: String? = nil, after: String? = nil) {
        self.date = date
        self.now = now
        self.after = after
    }

    public static func parse(_ json: JSONValue, sandbox: Bool) -> Result<SettlementRunRequest, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var reader = FieldReader(object: object)
        let day = reader.optionalDay("date")
        let now = reader.sandboxNow(sandbox: sandbox)
        let after = object["after"] == nil ? nil : reader.resourceNumber("after", prefix: "mch_")
        reader.rejectUnknown(allowed: ["date", "now", "after"])
        guard reader.errors.isEmpty else { return .failure(ValidationFailure(reader.errors)) }
        return .success(SettlementRunRequest(date: day?.description, now: now.map(Timestamp.format), after: after))
    }
}

/// `settlement.merchant`: settle one merchant's UTC day (each its own exactly-once effect).
public struct SettlementMerchantRequest: Sendable, Equatable, Codable {
    public var merchantId: String
    public var date: String
    public var now: String?

    enum CodingKeys: String, CodingKey { case merchantId = "merchant_id", date, now }

    public init(merchantId: String, date: String, now: String? = nil) {
        self.merchantId = merchantId
        self.date = date
        self.now = now
    }

    public var day: UTCDay { UTCDay(date)! }

    public static func parse(_ json: JSONValue, sandbox: Bool) -> Result<SettlementMerchantRequest, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var reader = FieldReader(object: object)
        let merchant = reader.resourceNumber("merchant_id", prefix: "mch_")
        let day = reader.day("date")
        let now = reader.sandboxNow(sandbox: sandbox)
        reader.rejectUnknown(allowed: ["merchant_id", "date", "now"])
        guard reader.errors.isEmpty, let merchant, let day else { return .failure(ValidationFailure(reader.errors)) }
        return .success(SettlementMerchantRequest(merchantId: merchant, date: day.description, now: now.map(Timestamp.format)))
    }
}

/// `archive.run`: move rows past their retention to the archive tables (`tables` limits the run;
/// `run` continues a run that handed over to a follow-up command).
public struct ArchiveRequest: Sendable, Equatable, Codable {
    public var tables: [String]?
    public var run: String?

    public static let archivable = ["payment_callbacks", "notifications", "audit_logs", "risk_events"]

    public init(tables: [String]? = nil, run: String? = nil) {
        self.tables = tables
        self.run = run
    }

    public static func parse(_ json: JSONValue) -> Result<ArchiveRequest, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var reader = FieldReader(object: object)
        var tables: [String]?
        switch object["tables"] {
        case nil, .null?: break
        case .array(let items)? where !items.isEmpty:
            var names: [String] = []
            for (index, item) in items.enumerated() {
                guard case .string(let name) = item, archivable.contains(name) else {
                    reader.errors.append(FieldError("tables[\(index)]", "must be one of \(archivable.joined(separator: ", "))"))
                    continue
                }
                if names.contains(name) { reader.errors.append(FieldError("tables[\(index)]", "names \(name) twice")) } else { names.append(name) }
            }
            tables = names
        case _?:
            reader.errors.append(FieldError("tables", "must be a non-empty array of table names"))
        }
        let run = reader.optionalText("run", maxLength: 128)
        reader.rejectUnknown(allowed: ["tables", "run"])
        guard reader.errors.isEmpty else { return .failure(ValidationFailure(reader.errors)) }
        return .success(ArchiveRequest(tables: tables, run: run))
    }
}

/// `export.run`: write (more of) an export task's file. `step` numbers the continuations.
public struct ExportRunRequest: Sendable, Equatable, Codable {
    public var taskId: String
    public var step: Int64?

    enum CodingKeys: String, CodingKey { case taskId = "task_id", step }

    public init(taskId: String, step: Int64? = nil) {
        self.taskId = taskId
        self.step = step
    }

    public static func parse(_ json: JSONValue) -> Result<ExportRunRequest, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var reader = FieldReader(object: object)
        let task = reader.resourceNumber("task_id", prefix: "exp_")
        let step = reader.optionalInteger("step", in: 0...10_000_000, unit: "")
        reader.rejectUnknown(allowed: ["task_id", "step"])
        guard reader.errors.isEmpty, let task else { return .failure(ValidationFailure(reader.errors)) }
        return .success(ExportRunRequest(taskId: task, step: step))
    }
}

/// `export.cleanup` (hourly): `{}`, or `{"now"}` in sandbox mode.
public struct CleanupRequest: Sendable, Equatable, Codable {
    public var now: String?

    public static func parse(_ json: JSONValue, sandbox: Bool) -> Result<CleanupRequest, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var reader = FieldReader(object: object)
        let now = reader.sandboxNow(sandbox: sandbox)
        reader.rejectUnknown(allowed: ["now"])
        guard reader.errors.isEmpty else { return .failure(ValidationFailure(reader.errors)) }
        return .success(CleanupRequest(now: now.map(Timestamp.format)))
    }
}

/// The body of `POST /api/v1/merchant/payments/export`: UTC days, both included, at most 366.
public struct ExportRequest: Sendable, Equatable, Codable {
    public var startDate: String
    public var endDate: String
    public var format: String

    public static let maxDays = 366
    public static let formats = ["csv"]

    enum CodingKeys: String, CodingKey { case startDate = "start_date", endDate = "end_date", format }

    public init(startDate: String, endDate: String, format: String = "csv") {
        self.startDate = startDate
        self.endDate = endDate
        self.format = format
    }

    public var start: UTCDay { UTCDay(startDate)! }
    public var end: UTCDay { UTCDay(endDate)! }

    public static func parse(_ json: JSONValue) -> Result<ExportRequest, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var reader = FieldReader(object: object)
        let start = reader.day("start_date")
        let end = reader.day("end_date")
        var format = "csv"
        switch object["format"] {
        case nil, .null?: break
        case .string(let text)? where formats.contains(text): format = text
        case _?: reader.errors.append(FieldError("format", "must be one of: \(formats.joined(separator: ", "))"))
        }
        if let start, let end {
            if end < start {
                reader.errors.append(FieldError("end_date", "must not be before start_date"))
            } else if start.days(to: end) + 1 > maxDays {
                reader.errors.append(FieldError("end_date", "the range is \(start.days(to: end) + 1) days; at most \(maxDays)"))
            }
        }
        reader.rejectUnknown(allowed: ["start_date", "end_date", "format"])
        guard reader.errors.isEmpty, let start, let end else { return .failure(ValidationFailure(reader.errors)) }
        return .success(ExportRequest(startDate: start.description, endDate: end.description, format: format))
    }
}

/// An export task's state.
public enum ExportStatus: String, Sendable, Codable, CaseIterable {
    case pending, processing, completed, failed, expired
}

/// An export task (CONTRACT §3), as `GET /api/v1/merchant/exports/{task_id}` and the export events show it.
public struct ExportTask: Sendable, Equatable, Codable {
    public var taskId: String
    public var merchantId: String
    public var status: ExportStatus
    public var startDate: String
    public var endDate: String
    public var format: String
    public var rowsDone: Int64
    public var rowsTotal: Int64
    public var rowCount: Int64?
    public var size: Int64?
    public var sha256: String?
    public var expiresAt: String?
    public var failureMessage: String?
    public var version: Int
    public var createdAt: String
    public var updatedAt: String

    enum CodingKeys: String, CodingKey {
        case taskId = "task_id", merchantId = "merchant_id", status, startDate = "start_date", endDate = "end_date", format
        case rowsDone = "rows_done", rowsTotal = "rows_total", progress, rowCount = "row_count", size, sha256
        case expiresAt = "expires_at", failureMessage = "failure_message", version, createdAt = "created_at", updatedAt = "updated_at"
    }

    public init(taskId: String, merchantId: String, status: ExportStatus, startDate: String, endDate: String, format: String,
                rowsDone: Int64 = 0, rowsTotal: Int64 = 0, rowCount: Int64? = nil, size: Int64? = nil, sha256: String? = nil,
                expiresAt: String? = nil, failureMessage: String? = nil, version: Int = 1, createdAt: String, updatedAt: String) {
        self.taskId = taskId
        self.merchantId = merchantId
        self.status = status
        self.startDate = startDate
        self.endDate = endDate
        self.format = format
        self.rowsDone = rowsDone
        self.rowsTotal = rowsTotal
        self.rowCount = rowCount
        self.size = size
        self.sha256 = sha256
        self.expiresAt = expiresAt
        self.failureMessage = failureMessage
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// Percent done, 0-100: 100 once completed (an empty range is done at once).
    public var progress: Int {
        if status == .completed { return 100 }
        guard rowsTotal > 0 else { return 0 }
        return Int(min(99, rowsDone * 100 / rowsTotal))
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(taskId: try c.decode(String.self, forKey: .taskId), merchantId: try c.decode(String.self, forKey: .merchantId),
                  status: try c.decode(ExportStatus.self, forKey: .status), startDate: try c.decode(String.self, forKey: .startDate),
                  endDate: try c.decode(String.self, forKey: .endDate), format: try c.decode(String.self, forKey: .format),
                  rowsDone: try c.decode(Int64.self, forKey: .rowsDone), rowsTotal: try c.decode(Int64.self, forKey: .rowsTotal),
                  rowCount: try c.decodeIfPresent(Int64.self, forKey: .rowCount), size: try c.decodeIfPresent(Int64.self, forKey: .size),
                  sha256: try c.decodeIfPresent(String.self, forKey: .sha256), expiresAt: try c.decodeIfPresent(String.self, forKey: .expiresAt),
                  failureMessage: try c.decodeIfPresent(String.self, forKey: .failureMessage), version: try c.decode(Int.self, forKey: .version),
                  createdAt: try c.decode(String.self, forKey: .createdAt), updatedAt: try c.decode(String.self, forKey: .updatedAt))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(taskId, forKey: .taskId)
        try c.encode(merchantId, forKey: .merchantId)
        try c.encode(status, forKey: .status)
        try c.encode(startDate, forKey: .startDate)
        try c.encode(endDate, forKey: .endDate)
        try c.encode(format, forKey: .format)
        try c.encode(rowsDone, forKey: .rowsDone)
        try c.encode(rowsTotal, forKey: .rowsTotal)
        try c.encode(progress, forKey: .progress)
        try c.encode(rowCount, forKey: .rowCount)
        try c.encode(size, forKey: .size)
        try c.encode(sha256, forKey: .sha256)
        try c.encode(expiresAt, forKey: .expiresAt)
        try c.encode(failureMessage, forKey: .failureMessage)
        try c.encode(version, forKey: .version)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(updatedAt, forKey: .updatedAt)
    }

    /// `exp_` + 26 base32 characters of the merchant and the request's Idempotency-Key: a retried
    /// request names the same task.
    public static func id(merchantId: String, idempotencyKey: String) -> String {
        "exp_" + Identifiers.base32(Identifiers.digest("export|\(merchantId)|\(idempotencyKey)").prefix(16))
    }

    public var eventType: String {
        switch status {
        case .completed: "export.completed"
        case .failed: "export.failed"
        default: "export.progress"
        }
    }
}
