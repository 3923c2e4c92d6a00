import Contract
@testable import Fleet
import Foundation
import Payments
import Testing
@testable import Workers

/// A sweep's fan-out: what it publishes is what the per-resource handler parses.
@Suite struct SweepTests {
    static func command(_ type: String, merchant: String, data: SweepRequest) -> Command<SweepRequest> {
        Command(id: "sweep-1", type: type, source: "/test", merchantId: merchant, idempotencyKey: "payment.timeout@2026-12-02T00:05:00.000Z",
                requestHash: "h", traceparent: nil, payload: data, attempt: 0, isFinalAttempt: false)
    }

    @Test(arguments: [("payment.timeout", "payment_no", "pay_"), ("preauth.expire", "pre_auth_no", "pa_")])
    func eachFollowUpParsesAsTheCommandItContinues(type: String, field: String, prefix: String) throws {
        let sweep = Sweep(type: type, field: field, batch: 2)
        let now = Date(timeIntervalSince1970: 1_893_456_000)
        let request = SweepRequest(now: now)
        let outcome = sweep.fanOut(Self.command(type, merchant: "", data: request), request: request, now: now,
                                   due: [("\(prefix)aaaa", "mch_1"), ("\(prefix)bbbb", "mch_2")])
        guard case .done(let events, _, let followUps) = outcome else { Issue.record("\(outcome)"); return }
        #expect(events.map(\.routingKey) == ["sys.sweep.completed"])
        #expect(followUps.map(\.merchantId) == ["mch_1", "mch_2", nil], "per resource its merchant; the continuation, the sweep's")
        let parsed = try followUps.map { followUp in
            try SweepRequest.parse(try JSONDecoder().decode(JSONValue.self, from: Data(try followUp.data().utf8)),
                                   resourceField: field, prefix: prefix, sandbox: true).get()
        }
        #expect(parsed == [SweepRequest(now: now, resource: "\(prefix)aaaa"), SweepRequest(now: now, resource: "\(prefix)bbbb"),
                           SweepRequest(now: now, after: "\(prefix)bbbb")])
        #expect(Set(followUps.map(\.key)).count == 3 && followUps.allSatisfy { $0.key.count <= 255 })
    }

    @Test func aSweepOnTheRealClockPublishesNoNow() throws {
        let sweep = Sweep(type: "payment.timeout", field: "payment_no", batch: 10)
        let outcome = sweep.fanOut(Self.command("payment.timeout", merchant: "mch_1", data: SweepRequest()), request: SweepRequest(),
                                   now: Date(), due: [("pay_aaaa", "mch_1")])
        guard case .done(let events, _, let followUps) = outcome else { Issue.record("\(outcome)"); return }
        #expect(events.map(\.routingKey) == ["m.mch_1.sweep.completed"])
        #expect(try followUps.map { try $0.data() } == [#"{"payment_no":"pay_aaaa"}"#], "parses outside sandbox mode too")
    }
}
