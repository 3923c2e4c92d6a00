import AMQP
import Contract
import Foundation
import PayFleetTesting
import Payments
import Postgres
import Store
import Testing

extension EndToEnd {
/// Orders, batch queries, the event log and settlement on the real executables.
@Suite(.serialized) struct MoneyOutEndToEndTests {
    /// A payment moves its order; a paid or cancelled order takes no new payment; a failed one
    /// leaves it open; each change is an `order.updated`.
    @Test func ordersFollowTheirPayments() async throws {
        let fleet = try await LifecycleFleet.start(workers: ["authorize", "capture", "timeout"])
        defer { Task { await fleet.stop() } }
        let (merchantId, apiKey) = try await fleet.merchant(tier: "business")
        let events = try await EventSubscriber(bindingKey: "m.\(merchantId).order.updated")
        func pay(_ order: String, _ amount: Int) async throws -> HTTP.Reply {
            try await fleet.post(apiKey, "/api/v1/payments", ["order_no": order, "amount": amount, "currency": "USD", "country": "US",
                                                             "pay_method": "card"])
        }

        // A declined try leaves the order created; the next one pays it.
        let declined = try await pay("o-1", 10_051)
        #expect(declined.status == 402 && declined.json["code"] as? String == "channel_declined", "\(declined.text)")
        #expect(try await fleet.get(apiKey, "/api/v1/orders/o-1").json["status"] as? String == "created")
        let paid = try await pay("o-1", 10_000)
        #expect(paid.status == 201 && paid.json["status"] as? String == "succeeded", "\(paid.text)")
        let paymentNo = try #require(paid.json["payment_no"] as? String)
        var order = try await fleet.get(apiKey, "/api/v1/orders/o-1").json
        #expect(order["status"] as? String == "paid" && order["amount"] as? Int == 10_000 && order["currency"] as? String == "USD")
        #expect((order["payments"] as? [String])?.last == paymentNo && (order["payments"] as? [String])?.count == 2)

        // A paid order takes no second payment: it fails, and nothing is charged or counted.
        let again = try await pay("o-1", 10_000)
        #expect(again.status == 402 && again.json["code"] as? String == "order_already_paid", "\(again.text)")
        #expect(try await fleet.usedToday(apiKey) == 10_000)

        // Refunds move it on.
        _ = try await fleet.post(apiKey, "/api/v1/payments/\(paymentNo)/refunds", ["amount": 3_000])
        #expect(try await fleet.get(apiKey, "/api/v1/orders/o-1").json["status"] as? String == "partially_refunded")
        _ = try await fleet.post(apiKey, "/api/v1/payments/\(paymentNo)/refunds", [:])
        order = try await fleet.get(apiKey, "/api/v1/orders/o-1").json
        #expect(order["status"] as? String == "refunded")

        // A pending payment that times out cancels its order, which then refuses payments.
        let pending = try await pay("o-2", 10_052)
        #expect(pending.json["status"] as? String == "pending", "\(pending.text)")
        _ = try await fleet.sweep("payment.timeout", merchantId: merchantId, now: Date().addingTimeInterval(31 * 60))
        let cancelled = await eventually { (try? await fleet.get(apiKey, "/api/v1/orders/o-2").json["status"] as? String) == "cancelled" }
        #expect(cancelled)
        let late = try await pay("o-2", 10_000)
        #expect(late.status == 402 && late.json["code"] as? String == "order_cancelled", "\(late.text)")

        // Another merchant's order is not found.
        let (_, otherKey) = try await fleet.merchant(tier: "business")
        #expect(try await fleet.get(otherKey, "/api/v1/orders/o-1").status == 404)

        // Each change of o-1 was announced (made by the declined try, paid, the refused second
        // payment listed, refunded twice), its versions one by one in commit order.
        let mine = { (received: [EventSubscriber.Received]) in
            EventSubscriber.distinct(received, type: "order.updated").filter { $0.data["order_no"] as? String == "o-1" }
        }
        let versions = mine(await events.wait { mine($0).count >= 5 }).map { $0.data["version"] as? Int ?? 0 }
        #expect(versions == [1, 2, 3, 4, 5], "\(versions)")
        await events.close()
    }

    /// Batch reads: one call for up to 100 ids, in the order asked, duplicates once, another
    /// merchant's ids not found; 101 ids is a 400 naming the field.
    @Test func batchQueries() async throws {
        let fleet = try await LifecycleFleet.start(workers: ["authorize"])
        defer { Task { await fleet.stop() } }
        let (_, apiKey) = try await fleet.merchant(tier: "business")
        let (_, otherKey) = try await fleet.merchant(tier: "business")
        let mine = try await fleet.pay(apiKey, amount: 1_000).json["payment_no"] as? String ?? ""
        let mine2 = try await fleet.pay(apiKey, amount: 2_000).json["payment_no"] as? String ?? ""
        let theirs = try await fleet.pay(otherKey, amount: 3_000).json
        let theirsNo = theirs["payment_no"] as? String ?? ""

        let reply = try await fleet.post(apiKey, "/api/v1/payments/batch", ["payment_nos": [mine2, theirsNo, mine, mine2, "pay_nope"]])
        #expect(reply.status == 200, "\(reply.text)")
        let data = reply.json["data"] as? [[String: Any]] ?? []
        #expect(data.map { $0["payment_no"] as? String ?? "" } == [mine2, mine])
        #expect(reply.json["not_found"] as? [String] == [theirsNo, "pay_nope"], "another merchant's payment is not found, never data")

        let orders = try await fleet.post(apiKey, "/api/v1/orders/batch",
                                          ["order_nos": [data.first?["order_no"] as? String ?? "", theirs["order_no"] as? String ?? ""]])
        #expect(orders.status == 200 && (orders.json["data"] as? [[String: Any]])?.count == 1 && (orders.json["not_found"] as? [String])?.count == 1,
                "\(orders.text)")

        let tooMany = try await fleet.post(apiKey, "/api/v1/payments/batch", ["payment_nos": (0...100).map { "pay_\($0)" }])
        #expect(tooMany.status == 400 && ((tooMany.json["errors"] as? [[String: Any]])?.first?["field"] as? String) == "payment_nos",
                "\(tooMany.text)")
        let wrongType = try await fleet.post(apiKey, "/api/v1/orders/batch", ["order_nos": "o-1"])
        #expect(wrongType.status == 400 && wrongType.json["code"] as? String == "invalid_request")
        // A read needs no Idempotency-Key.
        let noKey = try await HTTP.post(fleet.base + "/api/v1/payments/batch",
                                        headers: ["Authorization": "Bearer \(apiKey)", "Content-Type": "application/json"],
                                        body: LifecycleFleet.json(["payment_nos": [mine]]))
        #expect(noKey.status == 200, "\(noKey.text)")
    }

    /// The event log holds what was published on AMQP, envelope for envelope, paginated in
    /// publish order and filtered by type.
    @Test func theEventLogReplaysWhatWasPublished() async throws {
        let fleet = try await LifecycleFleet.start(workers: ["authorize"])
        defer { Task { await fleet.stop() } }
        let (merchantId, apiKey) = try await fleet.merchant(tier: "business")
        let subscriber = try await EventSubscriber(bindingKey: "m.\(merchantId).#")
        for amount in [1_000, 2_000, 3_051] { _ = try await fleet.pay(apiKey, amount: amount) }
        // 3 payment events and 3 order.updated, each once (a redelivered duplicate repeats its id).
        let published = EventSubscriber.distinct(await subscriber.wait { EventSubscriber.distinct($0).count >= 6 })
        await subscriber.close()

        // Page by page, two at a time, until the cursor runs out.
        var logged: [[String: Any]] = [], cursor: String?
        repeat {
            var logPage: [String: Any] = [:]
            let found = await eventually {
                let path = "/api/v1/merchant/events?limit=2" + (cursor.map { "&cursor=\($0)" } ?? "")
                logPage = (try? await fleet.get(apiKey, path).json) ?? [:]
                return cursor != nil || (logPage["data"] as? [Any])?.isEmpty == false
            }
            #expect(found)
            logged += logPage["data"] as? [[String: Any]] ?? []
            cursor = logPage["next_cursor"] as? String
        } while cursor != nil && logged.count < 20
        #expect(logged.count == published.count, "\(logged.count) logged, \(published.count) published")
        for event in published {
            let entry = logged.first { $0["id"] as? String == event.eventId }
            #expect(entry.map { NSDictionary(dictionary: $0) } == NSDictionary(dictionary: event.json), "the envelope exactly as on AMQP")
        }
        let failed = try await fleet.get(apiKey, "/api/v1/merchant/events?type=payment.failed").json["data"] as? [[String: Any]] ?? []
        #expect(failed.count == 1 && failed.first?["type"] as? String == "payment.failed")
        let future = try await fleet.get(apiKey, "/api/v1/merchant/events?since=\(Timestamp.format(Date().addingTimeInterval(3_600)))")
        #expect((future.json["data"] as? [Any])?.isEmpty == true)
        let bad = try await fleet.get(apiKey, "/api/v1/merchant/events?cursor=12&since=yesterday")
        #expect(bad.status == 400 && Set((bad.json["errors"] as? [[String: Any]] ?? []).compactMap { $0["field"] as? String }) == ["cursor", "since"])
    }

    /// A day's captured payments and refunds become one settlement per currency; its lines add up
    /// to its gross, and a rerun changes nothing.
    @Test func settlementOfADay() async throws {
        // Two merchants per fan-out transaction: the clock's run continues in follow-ups.
        let fleet = try await LifecycleFleet.start(workers: ["authorize", "capture", "settle"],
                                                   extra: ["settle": ["PAYFLEET_SETTLEMENT_BATCH": "2"]])
        defer { Task { await fleet.stop() } }
        let (merchantId, apiKey) = try await fleet.merchant(tier: "enterprise")
        let events = try await EventSubscriber(bindingKey: "m.\(merchantId).#")
        var paymentNos: [String] = []
        for amount in [10_000, 20_000, 5_000] {
            paymentNos.append(try await fleet.pay(apiKey, amount: amount).json["payment_no"] as? String ?? "")
        }
        _ = try await fleet.pay(apiKey, amount: 7_051)                                   // declined: not settled
        let refund = try await fleet.post(apiKey, "/api/v1/payments/\(paymentNos[0])/refunds", ["amount": 2_000])
        #expect(refund.status == 201, "\(refund.text)")
        let held = try await fleet.preAuth(apiKey, amount: 9_000).json["pre_auth_no"] as? String ?? ""
        let capture = try await fleet.post(apiKey, "/api/v1/merchant/pre-auth/capture", ["pre_auth_no": held, "amount": 3_000])
        #expect(capture.status == 201, "\(capture.text)")
        let euro = try await fleet.post(apiKey, "/api/v1/payments", ["order_no": "eu-1", "amount": 4_000, "currency": "EUR", "country": "DE",
                                                                     "pay_method": "card"])
        #expect(euro.json["status"] as? String == "succeeded", "\(euro.text)")

        // The day the payments were made, settled with tomorrow's clock (sandbox mode).
        let pool = try TestEnvironment.postgres(size: 1)
        let madeAt = try await pool.query("SELECT min(created_at) AS at FROM payments WHERE merchant_id = $1", [merchantId]).rows[0].date("at")
        let day = UTCDay(containing: madeAt)
        let tomorrow = day.end.addingTimeInterval(600)
        try await settle(fleet, merchantId: merchantId, day: day, now: tomorrow)
        let created = EventSubscriber.distinct(await events.wait { EventSubscriber.distinct($0, type: "settlement.created").count >= 2 },
                                               type: "settlement.created")
        #expect(Set(created.map(\.eventId)).count == 2, "two settlements of one command have two event ids")
        let usd = try #require(created.first { $0.data["currency"] as? String == "USD" }?.data)
        #expect(usd["gross"] as? Int == 36_000 && usd["fee"] as? Int == 162 && usd["net"] as? Int == 35_838, "\(usd)")
        #expect(usd["payment_count"] as? Int == 4 && usd["refund_count"] as? Int == 1 && usd["fee_bps"] as? Int == 45)
        #expect(usd["date"] as? String == day.description)
        #expect(usd["payout_date"] as? String == BusinessCalendar.standard.payoutDate(for: day, cycle: .tPlus0).description)
        let settlementId = try #require(usd["settlement_id"] as? String)

        // Its lines, two per page, add up to its gross.
        var lines: [[String: Any]] = [], cursor: String?
        repeat {
            let page = try await fleet.get(apiKey, "/api/v1/merchant/settlements/\(settlementId)/lines?limit=2" + (cursor.map { "&cursor=\($0)" } ?? "")).json
            lines += page["data"] as? [[String: Any]] ?? []
            cursor = page["next_cursor"] as? String
        } while cursor != nil && lines.count < 50
        let sum = lines.reduce(0) { $0 + ($1["kind"] as? String == "refund" ? -1 : 1) * ($1["amount"] as? Int ?? 0) }
        #expect(lines.count == 5 && sum == 36_000, "\(lines)")

        // A rerun, by the clock's `settlement.run` this time (it fans out to every merchant with
        // auto-settlement on), settles nothing twice.
        for _ in 0..<3 { _ = try await fleet.merchant(tier: "starter") }   // more merchants than one batch
        let system = try await EventSubscriber(bindingKey: "sys.settlement.#")
        let run = CloudEvent(id: MessageIds.newCommandId(), type: "settlement.run", source: "/test/clock", time: nil, merchantId: nil,
                             data: ["date": day.description, "now": Timestamp.format(tomorrow)])
        try await Fixtures.publishAll([try Fixtures.message(run)], on: fleet.broker)
        let fanned = await system.wait { $0.contains { $0.correlationId == run.id } }.first { $0.correlationId == run.id }
        #expect(fanned?.type == "settlement.run.completed" && fanned?.data["merchants"] as? Int == 2 && fanned?.data["continued"] as? Bool == true,
                "\(String(describing: fanned?.json))")
        await system.close()
        // Two outcomes, told apart by event id (delivery is at least once: a duplicate repeats its id).
        // Of this day only: a clock another suite ran may have left a settlement.run of its own
        // yesterday in the queue, whose fan-out reaches this merchant too.
        let outcomes = { (received: [EventSubscriber.Received]) in
            EventSubscriber.distinct(received, type: "settlement.merchant.completed").filter { $0.data["date"] as? String == day.description }
        }
        let reran = outcomes(await events.wait(timeout: .seconds(120)) { outcomes($0).count >= 2 }).dropFirst().first?.data
        #expect((reran?["settlement_ids"] as? [Any])?.isEmpty == true, "\(String(describing: reran))")
        let list = try await fleet.get(apiKey, "/api/v1/merchant/settlements?from=\(day)&to=\(day)").json["data"] as? [[String: Any]] ?? []
        #expect(list.count == 2 && list.first { $0["currency"] as? String == "USD" }?["gross"] as? Int == 36_000)
        let stamped = try await pool.query("SELECT count(*) AS n FROM payments WHERE settlement_id = $1", [settlementId]).rows[0].int("n")
        #expect(stamped == 4)
        #expect(try await fleet.get(apiKey, "/api/v1/merchant/settlements?currency=EUR").json["data"].map { ($0 as? [Any])?.count } == 1)

        // Another merchant sees none of it; today is not settled.
        let (_, otherKey) = try await fleet.merchant(tier: "business")
        #expect(try await fleet.get(otherKey, "/api/v1/merchant/settlements/\(settlementId)").status == 404)
        try await settle(fleet, merchantId: merchantId, day: UTCDay(containing: Date()), now: nil)
        let rejected = await events.wait { $0.contains { $0.type == "command.rejected" } }.first { $0.type == "command.rejected" }
        #expect(rejected?.data["code"] as? String == "invalid_request", "\(String(describing: rejected?.data))")
        await events.close()
        await pool.close()
    }

    /// Publishes `settlement.run` for `day` (with a test clock), as the clock or an operator would.
    func settle(_ fleet: LifecycleFleet, merchantId: String, day: UTCDay, now: Date?) async throws {
        var data = ["merchant_id": merchantId, "date": day.description]
        if let now { data["now"] = Timestamp.format(now) }
        let command = CloudEvent(id: MessageIds.newCommandId(), type: "settlement.merchant", source: "/test/operator", time: nil,
                                 merchantId: merchantId, data: data)
        try await Fixtures.publishAll([try Fixtures.message(command)], on: fleet.broker)
    }
}
}
