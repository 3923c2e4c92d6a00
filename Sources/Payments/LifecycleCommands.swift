import Contract
import Foundation

/// The `data` of `preauth.create` and the body of `POST /api/v1/merchant/pre-auth`: a payment's
/// fields plus how long the hold lasts.
public struct PreAuthRequest: Sendable, Equatable, Codable {
    public var payment: PaymentRequest
    public var expiresInSeconds: Int64

    /// RULES: 7 days by default, at most 30 days.
    public static let defaultExpiry: Int64 = 7 * 24 * 3600
    public static let expiryRange: ClosedRange<Int64> = 60...(30 * 24 * 3600)

    public init(payment: PaymentRequest, expiresInSeconds: Int64 = PreAuthRequest.defaultExpiry) {
        self.payment = payment
        self.expiresInSeconds = expiresInSeconds
    }

    public static func parse(_ json: JSONValue) -> Result<PreAuthRequest, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var reader = FieldReader(object: object)
        let payment = PaymentRequest.read(&reader)
        let expires = reader.optionalInteger("expires_in_seconds", in: expiryRange, unit: "seconds (1 minute to 30 days)")
        reader.rejectUnknown(allowed: PaymentRequest.allowedFields.union(["expires_in_seconds"]))
        guard reader.errors.isEmpty, let payment else { return .failure(ValidationFailure(reader.errors)) }
        return .success(PreAuthRequest(payment: payment, expiresInSeconds: expires ?? defaultExpiry))
    }

    // Encoded flat, as it arrives: the payment's fields and `expires_in_seconds`.
    enum CodingKeys: String, CodingKey { case expiresInSeconds = "expires_in_seconds" }

    public init(from decoder: any Decoder) throws {
        payment = try PaymentRequest(from: decoder)
        expiresInSeconds = try decoder.container(keyedBy: CodingKeys.self).decode(Int64.self, forKey: .expiresInSeconds)
    }

    public func encode(to encoder: any Encoder) throws {
        try payment.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(expiresInSeconds, forKey: .expiresInSeconds)
    }
}

/// `preauth.capture`: capture `amount` (default: all that remains); `final` releases the rest.
public struct CaptureRequest: Sendable, Equatable, Codable {
    public var preAuthNo: String
    public var amount: Int64?
    public var final: Bool

    enum CodingKeys: String, CodingKey { case preAuthNo = "pre_auth_no", amount, final }

    public init(preAuthNo: String, amount: Int64? = nil, final: Bool = false) {
        self.preAuthNo = preAuthNo
        self.amount = amount
        self.final = final
    }

    public static func parse(_ json: JSONValue) -> Result<CaptureRequest, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var reader = FieldReader(object: object)
        let number = reader.resourceNumber("pre_auth_no", prefix: "pa_")
        let amount = reader.optionalAmount("amount")
        let final = reader.optionalBool("final")
        reader.rejectUnknown(allowed: ["pre_auth_no", "amount", "final"])
        guard reader.errors.isEmpty, let number else { return .failure(ValidationFailure(reader.errors)) }
        return .success(CaptureRequest(preAuthNo: number, amount: amount, final: final ?? false))
    }
}

/// `preauth.cancel`: release what was not captured.
public struct CancelRequest: Sendable, Equatable, Codable {
    public var preAuthNo: String
    public var reason: String

    enum CodingKeys: String, CodingKey { case preAuthNo = "pre_auth_no", reason }

    public init(preAuthNo: String, reason: String) {
        self.preAuthNo = preAuthNo
        self.reason = reason
    }

    public static func parse(_ json: JSONValue) -> Result<CancelRequest, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var reader = FieldReader(object: object)
        let number = reader.resourceNumber("pre_auth_no", prefix: "pa_")
        let reason = reader.text("reason", maxLength: 500)
        reader.rejectUnknown(allowed: ["pre_auth_no", "reason"])
        guard reader.errors.isEmpty, let number, let reason else { return .failure(ValidationFailure(reader.errors)) }
        return .success(CancelRequest(preAuthNo: number, reason: reason))
    }
}

/// `payment.refund`: give back `amount` (default: all that remains refundable).
public struct RefundRequest: Sendable, Equatable, Codable {
    public var paymentNo: String
    public var amount: Int64?
    public var reason: String?

    enum CodingKeys: String, CodingKey { case paymentNo = "payment_no", amount, reason }

    public init(paymentNo: String, amount: Int64? = nil, reason: String? = nil) {
        self.paymentNo = paymentNo
        self.amount = amount
        self.reason = reason
    }

    public static func parse(_ json: JSONValue) -> Result<RefundRequest, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var reader = FieldReader(object: object)
        let number = reader.resourceNumber("payment_no", prefix: "pay_")
        let amount = reader.optionalAmount("amount")
        let reason = reader.optionalText("reason", maxLength: 500)
        reader.rejectUnknown(allowed: ["payment_no", "amount", "reason"])
        guard reader.errors.isEmpty, let number else { return .failure(ValidationFailure(reader.errors)) }
        return .success(RefundRequest(paymentNo: number, amount: amount, reason: reason))
    }
}

/// What a channel reported about a payment it had left pending.
public enum ChannelResult: String, Sendable, Codable, CaseIterable {
    case succeeded, failed
}

/// `payment.complete`: a channel's asynchronous result (from `notify`).
public struct CompleteRequest: Sendable, Equatable, Codable {
    public var paymentNo: String
    public var result: ChannelResult
    public var channelRef: String

    enum CodingKeys: String, CodingKey { case paymentNo = "payment_no", result, channelRef = "channel_ref" }

    public init(paymentNo: String, result: ChannelResult, channelRef: String) {
        self.paymentNo = paymentNo
        self.result = result
        self.channelRef = channelRef
    }

    public static let allowedFields: Set<String> = ["payment_no", "result", "channel_ref"]

    public static func parse(_ json: JSONValue) -> Result<CompleteRequest, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var reader = FieldReader(object: object)
        let number = reader.resourceNumber("payment_no", prefix: "pay_")
        let result: ChannelResult? = reader.enumeration("result")
        let reference = reader.text("channel_ref", maxLength: 128)
        reader.rejectUnknown(allowed: allowedFields)
        guard reader.errors.isEmpty, let number, let result, let reference else { return .failure(ValidationFailure(reader.errors)) }
        return .success(CompleteRequest(paymentNo: number, result: result, channelRef: reference))
    }
}

/// `payment.timeout` and `preauth.expire`: a sweep (`{}`, or `{"now"}` in sandbox mode, like
/// Stripe's test clocks), or, as a sweep publishes them, one resource each (`payment_no` or
/// `pre_auth_no`, with the sweep's `now`). `after` continues a sweep past a batch.
public struct SweepRequest: Sendable, Equatable, Codable {
    public var now: Date?
    /// The one resource this command ends, when it is a sweep's per-resource command.
    public var resource: String?
    /// A continuation: only resources after this number.
    public var after: String?

    public init(now: Date? = nil, resource: String? = nil, after: String? = nil) {
        self.now = now
        self.resource = resource
        self.after = after
    }

    /// - Parameters:
    ///   - resourceField: `payment_no` or `pre_auth_no`; `prefix` its number's prefix.
    ///   - sandbox: whether `now` may be given (sandbox mode); outside it `now` is refused.
    public static func parse(_ json: JSONValue, resourceField: String, prefix: String, sandbox: Bool) -> Result<SweepRequest, ValidationFailure> {
        guard case .object(let object) = json else { return .failure(ValidationFailure([FieldError("$", "must be a JSON object")])) }
        var reader = FieldReader(object: object)
        let now = reader.optionalTime("now")
        if now != nil, !sandbox {
            reader.errors.append(FieldError("now", "moves time only in sandbox mode (PAYFLEET_SANDBOX); this deployment runs on the real clock"))
        }
        var resource: String?, after: String?
        if object[resourceField] != nil { resource = reader.resourceNumber(resourceField, prefix: prefix) }
        if object["after"] != nil { after = reader.resourceNumber("after", prefix: prefix) }
        if resource != nil, after != nil { reader.errors.append(FieldError("after", "continues a sweep, not a single \(resourceField)")) }
        reader.rejectUnknown(allowed: ["now", resourceField, "after"])
        guard reader.errors.isEmpty else { return .failure(ValidationFailure(reader.errors)) }
        return .success(SweepRequest(now: now, resource: resource, after: after))
    }

    enum CodingKeys: String, CodingKey { case now, resource, after }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        now = try container.decodeIfPresent(String.self, forKey: .now).flatMap(Timestamp.parse)
        resource = try container.decodeIfPresent(String.self, forKey: .resource)
        after = try container.decodeIfPresent(String.self, forKey: .after)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(now.map(Timestamp.format), forKey: .now)
        try container.encodeIfPresent(resource, forKey: .resource)
        try container.encodeIfPresent(after, forKey: .after)
    }
}

/// The pre-authorization resource (CONTRACT §3), shared by HTTP bodies and event `data`; every
/// field is always present. `released_amount` states what a final capture, cancel or expiry gave
/// back (what was never captured).
public struct PreAuthorization: Sendable, Codable, Equatable {
    public var preAuthNo: String
    public var merchantId: String
    public var orderNo: String
    public var amount: Int64
    public var currency: Currency
    public var channel: String?
    public var status: PreAuthStatus
    public var capturedAmount: Int64
    public var captureCount: Int
    public var releasedAmount: Int64
    public var expiresAt: String
    public var failureCode: String?
    public var failureMessage: String?
    public var version: Int
    public var createdAt: String
    public var updatedAt: String

    enum CodingKeys: String, CodingKey {
        case preAuthNo = "pre_auth_no", merchantId = "merchant_id", orderNo = "order_no", amount, currency, channel, status
        case capturedAmount = "captured_amount", captureCount = "capture_count", releasedAmount = "released_amount"
        case expiresAt = "expires_at", failureCode = "failure_code", failureMessage = "failure_message", version
        case createdAt = "created_at", updatedAt = "updated_at"
    }

    public init(preAuthNo: String, merchantId: String, orderNo: String, amount: Int64, currency: Currency, channel: String?,
                status: PreAuthStatus, capturedAmount: Int64 = 0, captureCount: Int = 0, releasedAmount: Int64 = 0,
                expiresAt: Date, failureCode: String? = nil, failureMessage: String? = nil, version: Int, createdAt: Date,
                updatedAt: Date) {
        self.preAuthNo = preAuthNo
        self.merchantId = merchantId
        self.orderNo = orderNo
        self.amount = amount
        self.currency = currency
        self.channel = channel
        self.status = status
        self.capturedAmount = capturedAmount
        self.captureCount = captureCount
        self.releasedAmount = releasedAmount
        self.expiresAt = Timestamp.format(expiresAt)
        self.failureCode = failureCode
        self.failureMessage = failureMessage
        self.version = version
        self.createdAt = Timestamp.format(createdAt)
        self.updatedAt = Timestamp.format(updatedAt)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(preAuthNo, forKey: .preAuthNo)
        try c.encode(merchantId, forKey: .merchantId)
        try c.encode(orderNo, forKey: .orderNo)
        try c.encode(amount, forKey: .amount)
        try c.encode(currency, forKey: .currency)
        try c.encode(channel, forKey: .channel)
        try c.encode(status, forKey: .status)
        try c.encode(capturedAmount, forKey: .capturedAmount)
        try c.encode(captureCount, forKey: .captureCount)
        try c.encode(releasedAmount, forKey: .releasedAmount)
        try c.encode(expiresAt, forKey: .expiresAt)
        try c.encode(failureCode, forKey: .failureCode)
        try c.encode(failureMessage, forKey: .failureMessage)
        try c.encode(version, forKey: .version)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(updatedAt, forKey: .updatedAt)
    }

    /// The money of this pre-authorization, to decide captures and closes by the domain rules.
    public var amounts: PreAuthorizationAmounts {
        PreAuthorizationAmounts(authorized: amount, captured: capturedAmount, captureCount: captureCount, status: status)
    }

    /// The event a pre-authorization emits on entering its status.
    public var eventType: String {
        switch status {
        case .processing: "preauth.processing"
        case .authorized: "preauth.authorized"
        case .failed: "preauth.failed"
        case .partiallyCaptured, .captured: "preauth.captured"
        case .cancelled: "preauth.cancelled"
        case .expired: "preauth.expired"
        }
    }
}

/// How amounts in the merchant's base currency follow a part of an amount: the base of a
/// capture or refund is the difference of proportional cumulative bases, so the parts of a whole
/// always add up to exactly its base (no cent lost or made by rounding).
public enum BaseShare {
    /// The base of the first `part` of `amount`, whose base is `base` (half-up).
    public static func of(_ part: Int64, in amount: Int64, base: Int64) -> Int64 {
        precondition(amount > 0 && part >= 0 && part <= amount)
        return Int64((Int128(base) * Int128(part) * 2 + Int128(amount)) / (Int128(amount) * 2))
    }

    /// The base of the slice from `before` to `after` of `amount`.
    public static func slice(from before: Int64, to after: Int64, of amount: Int64, base: Int64) -> Int64 {
        of(after, in: amount, base: base) - of(before, in: amount, base: base)
    }
}
