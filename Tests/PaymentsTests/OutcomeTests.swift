import Contract
import Payments
import Testing

@Suite struct OutcomeTests {
    @Test(arguments: [
        (Int64(5_000), "succeeded"), (Int64(5_051), "declined"), (Int64(5_052), "pending"), (Int64(5_053), "transient"),
        (Int64(51), "declined"), (Int64(151), "declined"), (Int64(5_150), "succeeded"), (Int64(1), "succeeded"),
    ])
    func sandboxOutcomeByLastTwoDigits(amount: Int64, expected: String) {
        let outcome = SandboxChannel.outcome(channel: "stripe", amount: amount, paymentNo: "pay_x")
        let name = switch outcome {
        case .succeeded: "succeeded"
        case .declined: "declined"
        case .pending: "pending"
        case .transientError: "transient"
        }
        #expect(name == expected)
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
        let event = MessageIds.eventId(commandId: "c1", type: "payment.succeeded")
        #expect(event == MessageIds.eventId(commandId: "c1", type: "payment.succeeded"))
        #expect(event != MessageIds.eventId(commandId: "c1", type: "payment.failed"))
        #expect(event.count == 36)
        #expect(!Identifiers.newMerchantId().contains("."))
    }

    @Test func eventRoutingKeys() {
        #expect(EventRouting.routingKey(type: "payment.succeeded", merchantId: "mch_1") == "m.mch_1.payment.succeeded")
        #expect(EventRouting.routingKey(type: "command.rejected", merchantId: nil) == "sys.command.rejected")
        #expect(EventRouting.routingKey(type: "command.rejected", merchantId: "a.b") == "sys.command.rejected")
    }
}
