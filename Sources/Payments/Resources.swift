import Contract
import Foundation

/// The payment resource (CONTRACT §3), shared by HTTP bodies and event `data`.
/// Every field is always present; absent values are JSON `null`.
public struct Payment: Sendable, Codable, Equatable {
    public var paymentNo: String
    public var merchantId: String
    public var orderNo: String
    public var amount: Int64
    public var currency: Currency
    public var country: String
    public var payMethod: PayMethod
    public var channel: String?
    public var routing: RoutingDecision?
    public var channelFee: Int64
    public var status: PaymentStatus
    public var failureCode: String?
    public var failureMessage: String?
    public var refundedAmount: Int64
    public var preAuthNo: String?
    public var subject: String?
    public var metadata: [String: String]
    public var version: Int
    public var createdAt: String
    public var updatedAt: String

    enum CodingKeys: String, CodingKey {
        case paymentNo = "payment_no", merchantId = "merchant_id", orderNo = "order_no", amount, currency, country
        case payMethod = "pay_method", channel, routing, channelFee = "channel_fee", status
        case failureCode = "failure_code", failureMessage = "failure_message", refundedAmount = "refunded_amount"
        case preAuthNo = "pre_auth_no", subject, metadata, version, createdAt = "created_at", updatedAt = "updated_at"
    }

    public init(paymentNo: String, merchantId: String, request: PaymentRequest, status: PaymentStatus,
                channel: String? = nil, routing: RoutingDecision? = nil, channelFee: Int64 = 0,
                failureCode: String? = nil, failureMessage: String? = nil, version: Int, at time: Date) {
        self.paymentNo = paymentNo
        self.merchantId = merchantId
        self.orderNo = request.orderNo
        self.amount = request.amount
        self.currency = request.currency
        self.country = request.country
        self.payMethod = request.payMethod
        self.channel = channel
        self.routing = routing
        self.channelFee = channelFee
        self.status = status
        self.failureCode = failureCode
        self.failureMessage = failureMessage
        self.refundedAmount = 0
        self.preAuthNo = nil
        self.subject = request.subject
        self.metadata = request.metadata ?? [:]
        self.version = version
        self.createdAt = Timestamp.format(time)
        self.updatedAt = self.createdAt
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(paymentNo, forKey: .paymentNo)
        try c.encode(merchantId, forKey: .merchantId)
        try c.encode(orderNo, forKey: .orderNo)
        try c.encode(amount, forKey: .amount)
        try c.encode(currency, forKey: .currency)
        try c.encode(country, forKey: .country)
        try c.encode(payMethod, forKey: .payMethod)
        try c.encode(channel, forKey: .channel)
        try c.encode(routing, forKey: .routing)
        try c.encode(channelFee, forKey: .channelFee)
        try c.encode(status, forKey: .status)
        try c.encode(failureCode, forKey: .failureCode)
        try c.encode(failureMessage, forKey: .failureMessage)
        try c.encode(refundedAmount, forKey: .refundedAmount)
        try c.encode(preAuthNo, forKey: .preAuthNo)
        try c.encode(subject, forKey: .subject)
        try c.encode(metadata, forKey: .metadata)
        try c.encode(version, forKey: .version)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(updatedAt, forKey: .updatedAt)
    }
}

/// The merchant resource (CONTRACT §3).
public struct Merchant: Sendable, Codable, Equatable {
    public var merchantId: String
    public var name: String
    public var tier: Tier
    public var baseCurrency: Currency
    public var country: String
    public var autoSettlement: Bool
    public var limitOverrides: LimitOverrides?
    public var createdAt: String

    enum CodingKeys: String, CodingKey {
        case merchantId = "merchant_id", name, tier, baseCurrency = "base_currency", country
        case autoSettlement = "auto_settlement", createdAt = "created_at"
    }

    public init(merchantId: String, name: String, tier: Tier, baseCurrency: Currency, country: String,
                autoSettlement: Bool, limitOverrides: LimitOverrides? = nil, createdAt: String) {
        self.merchantId = merchantId
        self.name = name
        self.tier = tier
        self.baseCurrency = baseCurrency
        self.country = country
        self.autoSettlement = autoSettlement
        self.limitOverrides = limitOverrides
        self.createdAt = createdAt
    }

    /// The limits in force, in minor units of the base currency.
    public var limits: EffectiveLimits { EffectiveLimits(tier: tier, currency: baseCurrency, overrides: limitOverrides) }
}

/// The body of `POST /api/v1/admin/merchants`, validated field by field.
public struct NewMerchant: Sendable, Equatable {
    public var name: String
    public var tier: Tier
    public var baseCurrency: Currency
    public var country: String
    public var autoSettlement: Bool

    public init(name: String, tier: Tier, baseCurrency: Currency, country: String, autoSettlement: Bool) {
        self.name = name
        self.tier = tier
        self.baseCurrency = baseCurrency
        self.country = country
        self.autoSettlement = autoSettlement
    }

    public static func parse(_ json: JSONValue) -> Result<NewMerchant, ValidationFailure> {
        guard case .object(let object) = json else {
            return .failure(ValidationFailure([FieldError("$", "must be a JSON object")]))
        }
        var reader = FieldReader(object: object)
        let name = reader.text("name", maxLength: 200)
        let tier: Tier? = reader.optionalEnumeration("tier")
        let currency: Currency? = reader.optionalEnumeration("base_currency")
        if let currency, !currency.isFiat {
            // Tier limits are whole units of a fiat currency (RULES "Merchant tiers").
            reader.errors.append(FieldError("base_currency", "must be a fiat currency (\(Currency.allCases.filter(\.isFiat).map(\.rawValue).joined(separator: ", "))); \(currency.rawValue) is a crypto currency"))
        }
        let country = reader.country("country")
        var autoSettlement = true
        switch object["auto_settlement"] {
        case nil, .null?: break
        case .bool(let value)?: autoSettlement = value
        case let other?: reader.errors.append(FieldError("auto_settlement", "must be a boolean, not a \(other.typeName)"))
        }
        reader.rejectUnknown(allowed: ["name", "tier", "base_currency", "country", "auto_settlement"])
        guard reader.errors.isEmpty, let name, let country else { return .failure(ValidationFailure(reader.errors)) }
        return .success(NewMerchant(name: name, tier: tier ?? .starter, baseCurrency: currency ?? .CNY,
                                    country: country, autoSettlement: autoSettlement))
    }
}
