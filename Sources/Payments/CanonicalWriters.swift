import Contract

// The outcome event's data written without `Codable` (see `CanonicalJSONWritable`): each writes
// what its `Encodable` conformance writes, keys in canonical order. `CanonicalJSONTests` compare
// every one with `JSONEncoder` on random values.

extension Payment: CanonicalJSONWritable {
    /// As `encode(to:)`: every key, `null` for what is nil.
    public func writeCanonicalJSON(_ json: inout CanonicalJSONWriter) throws {
        try json.object { json in
            json.field("amount", amount)
            json.field("channel", channel)
            json.field("channel_fee", channelFee)
            json.field("country", country)
            json.field("created_at", createdAt)
            json.field("currency", currency.rawValue)
            json.field("failure_code", failureCode)
            json.field("failure_message", failureMessage)
            json.field("merchant_id", merchantId)
            json.field("metadata", metadata)
            json.field("order_no", orderNo)
            json.field("pay_method", payMethod.rawValue)
            json.field("payment_no", paymentNo)
            json.field("pre_auth_no", preAuthNo)
            json.field("refunded_amount", refundedAmount)
            try json.field("routing", routing)
            json.field("status", status.rawValue)
            json.field("subject", subject)
            json.field("updated_at", updatedAt)
            json.field("version", version)
        }
    }
}

extension RoutingDecision: CanonicalJSONWritable {
    /// As the synthesized conformance: `channel`, `strategy` and `estimated_fee` left out when nil.
    public func writeCanonicalJSON(_ json: inout CanonicalJSONWriter) throws {
        try json.object { json in
            try json.field("candidates", candidates)
            json.fieldIfPresent("channel", channel)
            json.fieldIfPresent("estimated_fee", estimatedFee)
            try json.field("excluded", excluded)
            json.field("mode", mode.rawValue)
            json.field("seed", seed)
            json.fieldIfPresent("strategy", strategy?.rawValue)
        }
    }
}

extension RoutingCandidate: CanonicalJSONWritable {
    public func writeCanonicalJSON(_ json: inout CanonicalJSONWriter) throws {
        try json.object { json in
            json.field("channel", channel)
            json.field("fee", fee)
            try json.field("scores", scores)
            try json.field("success_rate", successRate)
            try json.field("total", total)
        }
    }
}

extension StrategyScores: CanonicalJSONWritable {
    public func writeCanonicalJSON(_ json: inout CanonicalJSONWriter) throws {
        try json.object { json in
            try json.field("cost", cost)
            try json.field("geographic", geographic)
            try json.field("load_balance", loadBalance)
            try json.field("success", success)
        }
    }
}

extension RoutingExclusion: CanonicalJSONWritable {
    public func writeCanonicalJSON(_ json: inout CanonicalJSONWriter) throws {
        json.object { json in
            json.field("channel", channel)
            json.field("reason", reason)
        }
    }
}

extension Order: CanonicalJSONWritable {
    /// As the synthesized conformance over `CodingKeys` (the paid and refunded amounts are not in it).
    public func writeCanonicalJSON(_ json: inout CanonicalJSONWriter) throws {
        json.object { json in
            json.field("amount", amount)
            json.field("created_at", createdAt)
            json.field("currency", currency.rawValue)
            json.field("merchant_id", merchantId)
            json.field("order_no", orderNo)
            json.field("payments", payments)
            json.field("status", status.rawValue)
            json.field("updated_at", updatedAt)
            json.field("version", version)
        }
    }
}
