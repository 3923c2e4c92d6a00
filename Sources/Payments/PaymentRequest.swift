import Contract
import Foundation

/// How a payment is paid.
public enum PayMethod: String, Sendable, Codable, CaseIterable {
    case card, wallet, qr, crypto
}

/// Which strategy ranks the routing candidates first.
public enum RoutingMode: String, Sendable, Codable, CaseIterable {
    case balanced, cost, success, geographic
}

/// The payer, as the merchant knows them; used by risk checks.
public struct Customer: Sendable, Codable, Equatable {
    public var id: String?
    public var email: String?
    public var ip: String?

    public init(id: String? = nil, email: String? = nil, ip: String? = nil) {
        self.id = id
        self.email = email
        self.ip = ip
    }
}

/// The `data` of a `payment.create` command and the body of `POST /api/v1/payments`.
///
/// Built only through `PaymentRequest.parse`, which checks every field and reports every
/// problem at once, so a value of this type is always valid.
public struct PaymentRequest: Sendable, Codable, Equatable {
    public var orderNo: String
    public var amount: Int64
    public var currency: Currency
    public var country: String
    public var payMethod: PayMethod
    public var channel: String?
    public var routingMode: RoutingMode?
    public var subject: String?
    public var customer: Customer?
    public var metadata: [String: String]?

    enum CodingKeys: String, CodingKey {
        case orderNo = "order_no", amount, currency, country, payMethod = "pay_method", channel
        case routingMode = "routing_mode", subject, customer, metadata
    }

    public init(orderNo: String, amount: Int64, currency: Currency, country: String, payMethod: PayMethod,
                channel: String? = nil, routingMode: RoutingMode? = nil, subject: String? = nil,
                customer: Customer? = nil, metadata: [String: String]? = nil) {
        self.orderNo = orderNo
        self.amount = amount
        self.currency = currency
        self.country = country
        self.payMethod = payMethod
        self.channel = channel
        self.routingMode = routingMode
        self.subject = subject
        self.customer = customer
        self.metadata = metadata
    }

    public static let allowedFields: Set<String> = [
        "order_no", "amount", "currency", "country", "pay_method", "channel", "routing_mode", "subject", "customer", "metadata",
    ]

    /// Validates a decoded JSON document field by field. Returns the request, or every field error found.
    public static func parse(_ json: JSONValue) -> Result<PaymentRequest, ValidationFailure> {
        guard case .object(let object) = json else {
            return .failure(ValidationFailure([FieldError("$", "must be a JSON object")]))
        }
        var reader = FieldReader(object: object)
        let request = read(&reader)
        reader.rejectUnknown(allowed: allowedFields)
        guard reader.errors.isEmpty, let request else { return .failure(ValidationFailure(reader.errors)) }
        return .success(request)
    }

    /// Reads the payment fields (also the base of a pre-authorization), collecting errors in `reader`.
    static func read(_ reader: inout FieldReader) -> PaymentRequest? {
        let orderNo = reader.text("order_no", maxLength: 64)
        let amount = reader.amount("amount")
        let currency: Currency? = reader.enumeration("currency", hint: "unknown currency")
        let country = reader.country("country")
        let payMethod: PayMethod? = reader.enumeration("pay_method")
        let channel = reader.optionalText("channel", maxLength: 32)
        if let channel, !channel.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }) {
            reader.errors.append(FieldError("channel", "must be a channel name (lowercase letters, digits, _)"))
        }
        let routingMode: RoutingMode? = reader.optionalEnumeration("routing_mode")
        let subject = reader.optionalText("subject", maxLength: 256)
        let customer = reader.customer("customer")
        let metadata = reader.metadata("metadata")
        guard let orderNo, let amount, let currency, let country, let payMethod else { return nil }
        return PaymentRequest(orderNo: orderNo, amount: amount, currency: currency, country: country,
                              payMethod: payMethod, channel: channel, routingMode: routingMode,
                              subject: subject, customer: customer, metadata: metadata)
    }
}

/// Reads typed fields out of a JSON object, collecting one error per bad field.
struct FieldReader {
    let object: [String: JSONValue]
    var errors: [FieldError] = []
    var prefix = ""

    init(object: [String: JSONValue], prefix: String = "") {
        self.object = object
        self.prefix = prefix
    }

    private func path(_ name: String) -> String { prefix.isEmpty ? name : "\(prefix).\(name)" }

    private mutating func value(_ name: String, required: Bool) -> JSONValue? {
        switch object[name] {
        case nil, .null?:
            if required { errors.append(FieldError(path(name), "is required")) }
            return nil
        case let value?:
            return value
        }
    }

    private mutating func string(_ name: String, required: Bool) -> String? {
        guard let value = value(name, required: required) else { return nil }
        guard case .string(let text) = value else {
            errors.append(FieldError(path(name), "must be a string, not a \(value.typeName)"))
            return nil
        }
        return text
    }

    mutating func text(_ name: String, maxLength: Int) -> String? {
        checkedText(string(name, required: true), name, maxLength: maxLength)
    }

    mutating func optionalText(_ name: String, maxLength: Int) -> String? {
        checkedText(string(name, required: false), name, maxLength: maxLength)
    }

    private mutating func checkedText(_ text: String?, _ name: String, maxLength: Int) -> String? {
        guard let text else { return nil }
        if text.isEmpty {
            errors.append(FieldError(path(name), "must not be empty"))
        } else if text.count > maxLength {
            errors.append(FieldError(path(name), "must be at most \(maxLength) characters"))
        } else if !TextRules.isPrintable(text) {
            errors.append(FieldError(path(name), "must contain printable characters only"))
        } else {
            return text
        }
        return nil
    }

    mutating func amount(_ name: String) -> Int64? {
        guard let value = value(name, required: true) else { return nil }
        switch value {
        case .integer(let amount) where amount > 0:
            return amount
        case .integer:
            errors.append(FieldError(path(name), "must be a positive integer amount in minor units"))
        case .unsignedInteger:
            errors.append(FieldError(path(name), "is too large (at most \(Int64.max) minor units)"))
        case .number(let number) where number.rounded() == number && number > 0:
            errors.append(FieldError(path(name), "is too large (at most \(Int64.max) minor units)"))
        case .number(let number) where number.rounded() == number:
            errors.append(FieldError(path(name), "must be a positive integer amount in minor units"))
        case .number:
            errors.append(FieldError(path(name), "must be an integer amount in minor units, not a fraction"))
        default:
            errors.append(FieldError(path(name), "must be an integer, not a \(value.typeName)"))
        }
        return nil
    }

    mutating func enumeration<T: RawRepresentable & CaseIterable>(_ name: String, hint: String? = nil) -> T?
    where T.RawValue == String {
        enumerationValue(string(name, required: true), name, hint: hint)
    }

    mutating func optionalEnumeration<T: RawRepresentable & CaseIterable>(_ name: String) -> T? where T.RawValue == String {
        enumerationValue(string(name, required: false), name, hint: nil)
    }

    private mutating func enumerationValue<T: RawRepresentable & CaseIterable>(_ raw: String?, _ name: String, hint: String?) -> T?
    where T.RawValue == String {
        guard let raw else { return nil }
        if let value = T(rawValue: raw) { return value }
        let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
        errors.append(FieldError(path(name), "\(hint ?? "unknown value") \(TextRules.forLog(raw, limit: 16)); expected one of \(allowed)"))
        return nil
    }

    mutating func country(_ name: String) -> String? {
        guard let code = string(name, required: true) else { return nil }
        guard Country.isValid(code) else {
            errors.append(FieldError(path(name), "must be an ISO 3166-1 alpha-2 code such as US or CN"))
            return nil
        }
        return code
    }

    mutating func customer(_ name: String) -> Customer? {
        guard let value = value(name, required: false) else { return nil }
        guard case .object(let fields) = value else {
            errors.append(FieldError(path(name), "must be an object, not a \(value.typeName)"))
            return nil
        }
        var nested = FieldReader(object: fields, prefix: path(name))
        let customer = Customer(id: nested.optionalText("id", maxLength: 128),
                                email: nested.optionalText("email", maxLength: 254),
                                ip: nested.optionalText("ip", maxLength: 45))
        if let email = customer.email, !email.contains("@") {
            nested.errors.append(FieldError(path(name) + ".email", "must be an email address"))
        }
        nested.rejectUnknown(allowed: ["id", "email", "ip"])
        errors += nested.errors
        return customer
    }

    mutating func metadata(_ name: String) -> [String: String]? {
        guard let value = value(name, required: false) else { return nil }
        guard case .object(let fields) = value else {
            errors.append(FieldError(path(name), "must be an object of strings, not a \(value.typeName)"))
            return nil
        }
        if fields.count > 50 { errors.append(FieldError(path(name), "must have at most 50 keys")) }
        var result: [String: String] = [:]
        for (key, entry) in fields.sorted(by: { $0.key < $1.key }) {
            let keyPath = "\(path(name)).\(TextRules.forLog(key, limit: 40))"
            guard case .string(let text) = entry else {
                errors.append(FieldError(keyPath, "must be a string, not a \(entry.typeName)"))
                continue
            }
            if key.isEmpty || key.count > 40 || !TextRules.isPrintable(key) {
                errors.append(FieldError(keyPath, "keys must be 1-40 printable characters"))
            } else if text.count > 500 || !TextRules.isPrintable(text) {
                errors.append(FieldError(keyPath, "values must be at most 500 printable characters"))
            } else {
                result[key] = text
            }
        }
        return result
    }

    /// An optional positive amount in minor units (absent: nil).
    mutating func optionalAmount(_ name: String) -> Int64? {
        switch object[name] {
        case nil, .null?: return nil
        default: return amount(name)
        }
    }

    mutating func optionalBool(_ name: String) -> Bool? {
        switch object[name] {
        case nil, .null?: return nil
        case .bool(let value)?: return value
        case let other?:
            errors.append(FieldError(path(name), "must be a boolean, not a \(other.typeName)"))
            return nil
        }
    }

    /// An optional integer within `range`.
    mutating func optionalInteger(_ name: String, in range: ClosedRange<Int64>, unit: String) -> Int64? {
        switch object[name] {
        case nil, .null?: return nil
        case .integer(let value)? where range.contains(value): return value
        case .integer?, .unsignedInteger?, .number?:
            errors.append(FieldError(path(name), "must be an integer from \(range.lowerBound) to \(range.upperBound) \(unit)"))
            return nil
        case let other?:
            errors.append(FieldError(path(name), "must be an integer, not a \(other.typeName)"))
            return nil
        }
    }

    /// An optional RFC 3339 time.
    mutating func optionalTime(_ name: String) -> Date? {
        guard let text = string(name, required: false) else { return nil }
        guard text.count <= 40, let date = Timestamp.parse(text) else {
            errors.append(FieldError(path(name), "must be an RFC 3339 time such as 2026-12-01T00:00:00Z"))
            return nil
        }
        return date
    }

    /// A required resource number with `prefix` (`pay_`, `pa_`).
    mutating func resourceNumber(_ name: String, prefix: String) -> String? {
        guard let text = self.text(name, maxLength: 64) else { return nil }
        guard text.hasPrefix(prefix), text.dropFirst(prefix.count).allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber) }) else {
            errors.append(FieldError(path(name), "must be a \(prefix)… number"))
            return nil
        }
        return text
    }

    mutating func rejectUnknown(allowed: Set<String>) {
        for key in object.keys.sorted() where !allowed.contains(key) {
            errors.append(FieldError(path(TextRules.forLog(key, limit: 40)), "is not a known field"))
        }
    }
}
