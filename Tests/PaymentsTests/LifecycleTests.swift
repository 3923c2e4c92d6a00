import Contract
import Foundation
import Payments
import PropertyBased
import Testing

/// The lifecycle's pure rules: pre-authorization money, refunds, base-currency shares, the
/// sandbox channel keys, and the command payloads.
@Suite struct LifecycleTests {
    /// Pre-authorization states as data: every pair of states either is a RULES transition or is
    /// refused with `IllegalTransition`, never silently taken.
    @Test(arguments: PreAuthStatus.allCases)
    func preAuthorizationTransitionsAreData(from: PreAuthStatus) {
        let allowed: [PreAuthStatus: Set<PreAuthStatus>] = [
            .processing: [.authorized, .failed],
            .authorized: [.partiallyCaptured, .captured, .cancelled, .expired],
            .partiallyCaptured: [.partiallyCaptured, .captured, .cancelled, .expired],
        ]
        for to in PreAuthStatus.allCases {
            if allowed[from, default: []].contains(to) {
                #expect((try? from.transition(to: to)) == to)
            } else {
                #expect(throws: IllegalTransition(from: from.rawValue, to: to.rawValue)) { try from.transition(to: to) }
            }
        }
    }

    @Test(arguments: PaymentStatus.allCases)
    func paymentTransitionsAreData(from: PaymentStatus) {
        let allowed: [PaymentStatus: Set<PaymentStatus>] = [
            .processing: [.succeeded, .pending, .failed], .pending: [.succeeded, .failed, .cancelled],
            .succeeded: [.partiallyRefunded, .refunded], .partiallyRefunded: [.partiallyRefunded, .refunded],
        ]
        for to in PaymentStatus.allCases {
            #expect(from.canTransition(to: to) == allowed[from, default: []].contains(to), "\(from) -> \(to)")
        }
    }

    /// Any sequence of captures (partial, final, too big, of nothing) and closes: captured never
    /// exceeds authorized, and once the pre-authorization is over, captured + released = authorized.
    @Test func capturedPlusReleasedIsTheAuthorizedAmountAtTheEnd() async {
        let step = zip(Gen.int(in: 0...3), Gen.int64(in: -5...6_000), Gen.bool(0.2))
        await propertyCheck(count: 400, input: Gen.int64(in: 1...10_000), step.array(of: 0...25)) { authorized, steps in
            var preauth = PreAuthorizationAmounts(authorized: authorized)
            var released: Int64 = 0
            for (kind, amount, final) in steps {
                switch kind {
                case 0, 1: if let capture = try? preauth.capture(amount, final: final) { released += capture.released }
                case 2: if let back = try? preauth.close(as: .cancelled) { released += back }
                default: if let back = try? preauth.close(as: .expired) { released += back }
                }
                #expect(preauth.captured <= authorized)
                #expect(preauth.captured + released <= authorized)
                if !preauth.status.isOpen { #expect(preauth.captured + released == authorized, "\(steps)") }
            }
        }
    }

    /// Refunds of a payment never exceed what was captured: the refundable rest only shrinks to 0.
    @Test func refundsNeverExceedWhatWasCaptured() async {
        await propertyCheck(count: 300, input: Gen.int64(in: 1...10_000), Gen.int64(in: -10...4_000).array(of: 0...20)) { captured, asks in
            var refunded: Int64 = 0
            for ask in asks {
                let refundable = captured - refunded
                guard ask > 0, ask <= refundable else { continue } // the worker answers invalid_state
                refunded += ask
                #expect(refunded <= captured)
            }
        }
    }

    /// The base-currency shares of captures and refunds add up to exactly the whole's base, in
    /// any split: no cent lost or made by rounding.
    @Test func baseSharesOfPartsAddUpToTheWhole() async {
        await propertyCheck(count: 400, input: Gen.int64(in: 1...1_000_000), Gen.int64(in: 0...2_000_000),
                            Gen.int64(in: 1...100_000).array(of: 1...15)) { amount, base, parts in
            var done: Int64 = 0, sum: Int64 = 0
            for part in parts where done + part <= amount {
                sum += BaseShare.slice(from: done, to: done + part, of: amount, base: base)
                done += part
            }
            sum += BaseShare.slice(from: done, to: amount, of: amount, base: base)
            #expect(sum == base)
        }
        #expect(BaseShare.of(300, in: 1_000, base: 7_143) == 2_143) // 2,142.9 rounds half-up
    }

    @Test func channelKeysAreDerivedFromTheResourceAndTheOperation() {
        #expect(ChannelKeys.authorize("pay_x") == "pay_x:authorize")
        #expect(ChannelKeys.void("pa_x") == "pa_x:void")
        #expect(ChannelKeys.capture("pa_x", commandKey: "k1") == ChannelKeys.capture("pa_x", commandKey: "k1"), "a redelivery repeats it")
        #expect(ChannelKeys.capture("pa_x", commandKey: "k1") != ChannelKeys.capture("pa_x", commandKey: "k2"), "two captures, two calls")
        #expect(ChannelKeys.refund("pay_x", commandKey: "k1").hasPrefix("pay_x:refund:"))
        #expect(Identifiers.capturePaymentNo(merchantId: "m", captureKey: "k") != Identifiers.paymentNo(merchantId: "m", idempotencyKey: "capture|k"))
    }

    @Test func aPreAuthorizationLastsSevenDaysByDefaultAndAtMostThirty() throws {
        let base: [String: JSONValue] = ["order_no": .string("room-12"), "amount": .integer(100_000), "currency": .string("USD"),
                                         "country": .string("US"), "pay_method": .string("card")]
        guard case .success(let plain) = PreAuthRequest.parse(.object(base)) else { Issue.record("refused"); return }
        #expect(plain.expiresInSeconds == 7 * 86_400)
        for (seconds, valid) in [(Int64(2_592_000), true), (2_592_001, false), (59, false), (60, true)] {
            var object = base
            object["expires_in_seconds"] = .integer(seconds)
            let result = PreAuthRequest.parse(.object(object))
            if valid { #expect((try? result.get())?.expiresInSeconds == seconds) } else {
                guard case .failure(let failure) = result else { Issue.record("accepted \(seconds)"); continue }
                #expect(failure.errors.map(\.field) == ["expires_in_seconds"])
            }
        }
        // Encoded flat, as it arrived.
        let json = try CanonicalJSON.encode(plain)
        #expect(json.contains("\"expires_in_seconds\":604800") && json.contains("\"order_no\":\"room-12\""))
    }

    @Test func captureRefundAndCompletePayloadsAreCheckedFieldByField() {
        guard case .failure(let capture) = CaptureRequest.parse(.object(["pre_auth_no": .string("pay_x"), "amount": .integer(0),
                                                                         "final": .string("yes")])) else { Issue.record("accepted"); return }
        #expect(Set(capture.errors.map(\.field)) == ["pre_auth_no", "amount", "final"])
        guard case .failure(let refund) = RefundRequest.parse(.object(["payment_no": .string("pay_x'); DROP TABLE payments;--")])) else {
            Issue.record("accepted"); return
        }
        #expect(refund.errors.map(\.field) == ["payment_no"])
        guard case .failure(let complete) = CompleteRequest.parse(.object(["payment_no": .string("pay_abc"), "result": .string("maybe"),
                                                                           "channel_ref": .string("r")])) else { Issue.record("accepted"); return }
        #expect(complete.errors.map(\.field) == ["result"])
    }

    /// Test clocks: a sweep may move time only in sandbox mode.
    @Test func aSweepTakesNowOnlyInSandboxMode() {
        let now: JSONValue = .object(["now": .string("2030-01-01T00:00:00Z")])
        guard case .failure(let refused) = SweepRequest.parse(now, resourceField: "payment_no", prefix: "pay_", sandbox: false) else {
            Issue.record("accepted outside sandbox mode"); return
        }
        #expect(refused.errors.map(\.field) == ["now"])
        #expect((try? SweepRequest.parse(now, resourceField: "payment_no", prefix: "pay_", sandbox: true).get())?.now
                == Date(timeIntervalSince1970: 1_893_456_000))
        #expect((try? SweepRequest.parse(.object([:]), resourceField: "payment_no", prefix: "pay_", sandbox: false).get()) == SweepRequest())
        guard case .failure = SweepRequest.parse(.object(["payment_no": .string("pay_a"), "after": .string("pay_b")]),
                                                 resourceField: "payment_no", prefix: "pay_", sandbox: false) else {
            Issue.record("one payment and a continuation at once"); return
        }
    }
}
