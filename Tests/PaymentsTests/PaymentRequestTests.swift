import Contract
import Foundation
import Payments
import Testing

@Suite struct PaymentRequestTests {
    static func parse(_ json: String) -> Result<PaymentRequest, ValidationFailure> {
        PaymentRequest.parse(try! JSONDecoder().decode(JSONValue.self, from: Data(json.utf8)))
    }

    static func errors(_ json: String) -> [String: String] {
        guard case .failure(let failure) = parse(json) else { return [:] }
        return Dictionary(failure.errors.map { ($0.field, $0.message) }, uniquingKeysWith: { a, _ in a })
    }

    static let validFields = [#""order_no":"order-1001""#, #""amount":5000"#, #""currency":"USD""#, #""country":"US""#,
                              #""pay_method":"card""#]
    static let valid = "{" + validFields.joined(separator: ",") + "}"

    /// The valid request with one field replaced (or added) by `fragment`.
    static func replacing(_ fragment: String) -> String {
        let key = fragment.prefix { $0 != ":" }
        return "{" + (validFields.filter { !$0.hasPrefix(key + ":") } + [fragment]).joined(separator: ",") + "}"
    }

    /// Integers between Int64.max and UInt64.max (a routing record's seed) survive a round trip
    /// exactly, and as an amount they are "too large", not "not an integer".
    @Test func bigIntegersStayExact() throws {
        let text = #"{"seed":14107210184035414272}"#
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(value == .object(["seed": .unsignedInteger(14_107_210_184_035_414_272)]))
        #expect(try CanonicalJSON.encode(value) == text)
        #expect(Self.errors(Self.replacing(#""amount":9223372036854775808"#))["amount"]?.contains("too large") == true)
    }

    @Test func acceptsAValidRequest() throws {
        let request = try Self.parse(Self.valid).get()
        #expect(request.orderNo == "order-1001")
        #expect(request.amount == 5000)
        #expect(request.currency == .USD)
        #expect(request.payMethod == .card)
    }

    @Test func keepsTheOrderNumberVerbatim() throws {
        let orderNo = #"O'Brien; DROP TABLE payments; -- =cmd|' /C calc'!A0 订单"#
        let json = #"{"order_no":"#  + String(decoding: try JSONEncoder().encode(orderNo), as: UTF8.self)
            + #","amount":1,"currency":"CNY","country":"CN","pay_method":"qr"}"#
        #expect(try Self.parse(json).get().orderNo == orderNo)
    }

    @Test(arguments: [
        (#""amount":0"#, "amount"), (#""amount":-5"#, "amount"), (#""amount":12.5"#, "amount"),
        (#""amount":"5000""#, "amount"), (#""amount":99999999999999999999"#, "amount"),
        (#""currency":"XXX""#, "currency"), (#""currency":5"#, "currency"),
        (#""country":"USA""#, "country"), (#""country":"ZZ""#, "country"),
        (#""pay_method":"cash""#, "pay_method"),
        (#""order_no":"""#, "order_no"), (#""order_no":"line\nbreak""#, "order_no"),
        (#""routing_mode":"fastest""#, "routing_mode"), (#""metadata":{"k":1}"#, "metadata.\"k\""),
        (#""customer":{"email":"not-an-email"}"#, "customer.email"), (#""surprise":true"#, "\"surprise\""),
    ])
    func rejectsABadField(fragment: String, field: String) {
        let errors = Self.errors(Self.replacing(fragment))
        #expect(errors[field] != nil, "expected an error on \(field), got \(errors)")
    }

    @Test func orderNumberOf64CharactersIsTheMaximum() {
        let ok = #"{"order_no":"\#(String(repeating: "a", count: 64))","amount":1,"currency":"USD","country":"US","pay_method":"card"}"#
        let long = #"{"order_no":"\#(String(repeating: "a", count: 65))","amount":1,"currency":"USD","country":"US","pay_method":"card"}"#
        #expect((try? Self.parse(ok).get()) != nil)
        #expect(Self.errors(long)["order_no"] != nil)
    }

    @Test func reportsEveryMissingFieldAtOnce() {
        let errors = Self.errors("{}")
        #expect(Set(errors.keys) == ["order_no", "amount", "currency", "country", "pay_method"])
    }

    @Test func rejectsANonObject() {
        #expect(Self.errors("[1,2]")["$"] != nil)
    }

    @Test func logQuotingNeutralisesControlCharacters() {
        #expect(TextRules.forLog("a\nb\"c") == #""a\u{a}b\u{22}c""#)
        #expect(!TextRules.isPrintable("x\u{2028}y"))
        #expect(TextRules.isPrintable("订单 ok"))
    }
}
