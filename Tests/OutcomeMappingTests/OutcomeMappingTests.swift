import Contract
import Fleet
import Foundation
import Ingress
import Payments
import Store
import Testing

/// How outcomes map to what callers see: outcome events to HTTP answers (CONTRACT §4), and
/// retries to delay levels. No servers.
@Suite struct OutcomeMappingTests {
    static let request = PaymentRequest(orderNo: "o-1", amount: 5_000, currency: .USD, country: "US", payMethod: .card)

    static func event(_ status: PaymentStatus, failure: FailureCode? = nil) throws -> [UInt8] {
        let payment = Payment(paymentNo: "pay_abc", merchantId: "mch_1", request: request, status: status,
                              failureCode: failure?.rawValue, failureMessage: failure.map { "because \($0.rawValue)" },
                              version: 1, at: Date())
        return Array(try CanonicalJSON.encode(CloudEvent(id: "e1", type: status.eventType, source: "/t", time: nil,
                                                     merchantId: "mch_1", data: payment)).utf8)
    }

    static func rejection(_ code: String, errors: [FieldError] = []) throws -> [UInt8] {
        Array(try CanonicalJSON.encode(CloudEvent(id: "e2", type: "command.rejected", source: "/t", time: nil, merchantId: "mch_1",
                                              data: CommandRejection(commandId: "c", commandType: "payment.create", code: code,
                                                                     message: "m", errors: errors))).utf8)
    }

    @Test(arguments: [(PaymentStatus.succeeded, 201), (.pending, 201)])
    func aPaymentOutcomeIs201WithTheResource(status: PaymentStatus, code: Int) throws {
        let reply = try OutcomeResponse.make(fromEvent: try Self.event(status))
        #expect(reply.status == code)
        #expect(reply.headers["Location"] == "/api/v1/payments/pay_abc")
        #expect(reply.body.contains("\"status\":\"\(status.rawValue)\""))
    }

    /// The 201 body is the event's `data` as the worker wrote it, not decoded and encoded again:
    /// it must be the same text the round trip gave, hostile strings and a routing decision included.
    @Test(arguments: [PaymentStatus.succeeded, .pending])
    func theResourceIsPassedOnAsTheRoundTripWouldHaveWrittenIt(status: PaymentStatus) throws {
        let hostile = "quote \" back \\ slash / tab \t nl \n é 漢 \u{1F600} \u{0001} </script> '; DROP TABLE payments; -- =cmd|' /C calc'!A0"
        let request = PaymentRequest(orderNo: hostile, amount: 5_000, currency: .USD, country: "US", payMethod: .card,
                                     metadata: [hostile: hostile, "a": "{\"data\":1}"])
        let decision = ChannelRouter(config: .defaults).decide(RoutingInput(amount: 5_000, currency: .USD, country: "US", payMethod: .card),
                                                        stats: ["stripe": ChannelStats(attempts: 3, successes: 2)], seed: 42)
        let payment = Payment(paymentNo: "pay_abc", merchantId: "mch_1", request: request, status: status, channel: decision.channel,
                              routing: decision, version: 1, at: Date())
        let event = Array(try CanonicalJSON.encode(CloudEvent(id: "e1", type: status.eventType, source: "/t", time: "2026-12-07T02:00:00.000Z",
                                                              merchantId: "mch_1", data: payment)).utf8)
        let reply = try OutcomeResponse.make(fromEvent: event)
        let roundTrip = try CanonicalJSON.encode(try JSONDecoder().decode(CloudEvent<JSONValue>.self, from: Data(event)).data)
        #expect(reply.status == 201)
        #expect(reply.body == roundTrip)
        #expect(try JSONDecoder().decode(Payment.self, from: Data(reply.body.utf8)) == payment)
    }

    @Test(arguments: [
        (FailureCode.limitExceeded, 402), (.riskBlocked, 402), (.channelDeclined, 402), (.noChannel, 402),
        (.channelError, 402), (.tierForbidden, 403),
    ])
    func aFailedPaymentIsAProblemHoldingTheResource(failure: FailureCode, code: Int) throws {
        let reply = try OutcomeResponse.make(fromEvent: try Self.event(.failed, failure: failure))
        #expect(reply.status == code)
        #expect(reply.headers["Content-Type"] == "application/problem+json")
        let body = try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as! [String: Any]
        #expect(body["code"] as? String == failure.rawValue)
        #expect((body["payment"] as? [String: Any])?["status"] as? String == "failed")
    }

    @Test(arguments: [("invalid_request", 400), ("idempotency_key_reused", 422), ("tier_forbidden", 403), ("merchant_not_found", 404)])
    func aRejectionIsAProblem(code: String, status: Int) throws {
        let reply = try OutcomeResponse.make(fromEvent: try Self.rejection(code, errors: [FieldError("data.amount", "bad")]))
        #expect(reply.status == status)
        let body = try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as! [String: Any]
        #expect(body["code"] as? String == code)
        // HTTP field paths start at the body, not at the envelope.
        #expect((body["errors"] as? [[String: Any]])?.first?["field"] as? String == "amount")
    }

    @Test func retriesBackOffThroughTheDelayLevelsAndAreBounded() {
        let policy = RetryPolicy(maxRetries: 5)
        #expect((0..<7).map { policy.delayLevel(afterAttempt: $0) } == ["1s", "5s", "30s", "2m", "10m", "10m", "10m"])
        #expect(!policy.isFinal(attempt: 4))
        #expect(policy.isFinal(attempt: 5))
        #expect(RetryPolicy(maxRetries: 0).isFinal(attempt: 0))
    }
}

/// The API key of an `Authorization` header: the fast path for ASCII answers as Foundation's
/// lowercasing and trimming do.
@Suite struct BearerTokenTests {
    static func foundation(_ value: String?) -> String? {
        guard let value, value.lowercased().hasPrefix("bearer ") else { return nil }
        let token = value.dropFirst(7).trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    @Test func aTokenIsReadAsFoundationWouldReadIt() {
        let pieces = ["Bearer ", "bearer ", "BEARER ", "BeArEr ", "Bearer", "Bearer\t", "Basic ", "bearer  ", " ", "\t", "sk_live_abc",
                      "sk_", "x", "é", "\u{A0}", "\u{2003}", "\u{130}", "K", "\u{212A}", "=", ""]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            let value = (0..<Int.random(in: 0...4, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined()
            #expect(IngressApp.bearerToken(header: value) == Self.foundation(value), "\(value.unicodeScalars.map { $0.value })")
        }
        #expect(IngressApp.bearerToken(header: nil) == nil)
        #expect(IngressApp.bearerToken(header: "Bearer  sk_live_1 \t") == "sk_live_1")
        #expect(IngressApp.bearerToken(header: "bearer\tsk_live_1") == nil)
    }
}
