import Contract
import Foundation
import Payments
import Testing

@Suite struct OutcomeTests {
    @Test(arguments: [
        (Int64(5_000), SandboxChannel.Behaviour.succeed), (5_051, .decline), (5_052, .pend), (5_053, .transient), (5_054, .noAnswer),
        (51, .decline), (151, .decline), (5_150, .succeed), (1, .succeed), (5_055, .succeed),
    ])
    func sandboxChargesByLastTwoDigits(amount: Int64, expected: SandboxChannel.Behaviour) {
        #expect(SandboxChannel.behaviour(of: .authorize, amount: amount) == expected)
    }

    /// Captures and refunds can be declined or fail for a moment, but never pend or go unanswered;
    /// a void always succeeds.
    @Test(arguments: [(Int64(30_051), SandboxChannel.Behaviour.decline), (30_053, .transient), (30_052, .succeed), (30_054, .succeed)])
    func sandboxCapturesAndRefundsByLastTwoDigits(amount: Int64, expected: SandboxChannel.Behaviour) {
        #expect(SandboxChannel.behaviour(of: .capture, amount: amount) == expected)
        #expect(SandboxChannel.behaviour(of: .refund, amount: amount) == expected)
        #expect(SandboxChannel.behaviour(of: .void, amount: amount) == .succeed)
    }

    @Test func paymentStatesFollowTheRules() throws {
        #expect(try PaymentStatus.processing.transition(to: .succeeded) == .succeeded)
        #expect(try PaymentStatus.pending.transition(to: .cancelled) == .cancelled)
        #expect(throws: IllegalTransition.self) { try PaymentStatus.failed.transition(to: .succeeded) }
        #expect(throws: IllegalTransition.self) { try PaymentStatus.succeeded.transition(to: .pending) }
        #expect(throws: IllegalTransition.self) { try PaymentStatus.refunded.transition(to: .partiallyRefunded) }
    }

    @Test(arguments: [
        (PaymentStatus.succeeded, "payment.succeeded"), (.pending, "payment.pending"), (.failed, "payment.failed"),
        (.cancelled, "payment.timed_out"),
    ])
    func eventTypePerStatus(status: PaymentStatus, type: String) {
        #expect(status.eventType == type)
    }

    @Test func identifiersAreDeterministicAndDotFree() {
        let a = Identifiers.paymentNo(merchantId: "mch_1", idempotencyKey: "k")
        #expect(a == Identifiers.paymentNo(merchantId: "mch_1", idempotencyKey: "k"))
        #expect(a != Identifiers.paymentNo(merchantId: "mch_2", idempotencyKey: "k"))
        #expect(a.hasPrefix("pay_") && a.count == 30)
        let event = MessageIds.eventId(merchantId: "mch_1", commandId: "c1", type: "payment.succeeded")
        #expect(event == MessageIds.eventId(merchantId: "mch_1", commandId: "c1", type: "payment.succeeded"))
        #expect(event != MessageIds.eventId(merchantId: "mch_1", commandId: "c1", type: "payment.failed"))
        // Publishers choose command ids: two merchants' equal ids must not give one event id.
        #expect(event != MessageIds.eventId(merchantId: "mch_2", commandId: "c1", type: "payment.succeeded"))
        #expect(event != MessageIds.eventId(merchantId: nil, commandId: "c1", type: "payment.succeeded"))
        #expect(event.count == 36)
        #expect(!Identifiers.newMerchantId().contains("."))
    }

    @Test func eventRoutingKeys() {
        #expect(EventRouting.routingKey(type: "payment.succeeded", merchantId: "mch_1") == "m.mch_1.payment.succeeded")
        #expect(EventRouting.routingKey(type: "command.rejected", merchantId: nil) == "sys.command.rejected")
        #expect(EventRouting.routingKey(type: "command.rejected", merchantId: "a.b") == "sys.command.rejected")
    }

    @Test func jsonDepthIsMeasuredWithoutParsing() {
        #expect(!JSONDepth.exceeds(Array(#"{"a":[{"b":{"c":1}}]}"#.utf8)))
        #expect(JSONDepth.exceeds(Array((String(repeating: "[", count: 33) + String(repeating: "]", count: 33)).utf8)))
        #expect(!JSONDepth.exceeds(Array(("\"" + String(repeating: "[", count: 100) + "\"").utf8)), "brackets in a string do not count")
        #expect(!JSONDepth.exceeds(Array(#"{"s":"\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}"#.utf8)), "nor after an escaped quote")
        #expect(JSONDepth.exceeds(Array(String(repeating: "[", count: 1_000_000).utf8)))
        // Bytes not stored contiguously take the other path, with the same answers.
        let deep = String(repeating: "[", count: 33) + String(repeating: "]", count: 33)
        #expect(JSONDepth.exceeds(deep.utf8))
        #expect(!JSONDepth.exceeds(("\"" + deep + "\"").utf8.lazy.map { $0 }))
        #expect(JSONDepth.exceeds(Array(deep.utf8).lazy.map { $0 }))
    }
}

/// `Hex` replaced `String(format: "%02x")` in every id and hash: the texts must not change, or
/// derived command ids and request hashes would differ from the ones already stored.
/// New traces and spans: well-formed, and each id fresh.
@Suite struct TraceContextTests {
    @Test func aNewTraceAndItsChildrenAreWellFormedWithFreshIds() throws {
        var traces = Set<String>(), parents = Set<String>()
        for _ in 0..<1_000 {
            let trace = TraceContext.new()
            #expect(TraceContext.valid(trace) == trace)
            let child = TraceContext.child(of: trace)
            #expect(TraceContext.valid(child) == child)
            #expect(TraceContext.traceId(child) == TraceContext.traceId(trace), "a child keeps its trace")
            traces.insert(try #require(TraceContext.traceId(trace)))
            parents.insert(String(child.split(separator: "-")[2]))
            parents.insert(String(trace.split(separator: "-")[2]))
        }
        #expect(traces.count == 1_000)
        #expect(parents.count == 2_000)
        // Every hex digit appears in every position of the trace ids: no byte is left unset.
        for position in 0..<32 {
            #expect(Set(traces.map { Array($0)[position] }).count == 16, "position \(position)")
        }
    }
}

@Suite struct HexTests {
    @Test func encodesLowerCaseTwoDigitsPerByte() {
        #expect(Hex.encode([0x00, 0x0F, 0xA0, 0xFF]) == "000fa0ff")
        #expect(Hex.encode([]) == "")
    }

    @Test func hashesAndDerivedIdsAreTheSameAsBefore() {
        // The known SHA-256 of "abc", and the id the earlier code derived (Python's hashlib, same rule).
        #expect(MessageIds.sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(MessageIds.commandId(derivedFrom: "slot-1") == "d9bb4b80-87f4-8b48-86da-d66a1cfbbe2b")
    }

    @Test func limitWindowsNameTheirDayAndMonth() throws {
        let date = try #require(ISO8601DateFormatter().date(from: "2026-03-05T23:59:59Z"))
        let windows = LimitWindows(at: date)
        #expect(windows.day == "20260305")
        #expect(windows.month == "202603")
    }
}
