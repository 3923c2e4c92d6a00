import AMQP
import Contract
@testable import Fleet
import Foundation
import PayFleetTesting
import Postgres
import Testing

/// The runtime's system commands, its one clock, what it does with a forged retry count, and the
/// handler's `parked` call.
@Suite(.serialized) struct RuntimeScopeAndTimeTests {
    @Test func aSystemCommandNeedsNoMerchantAndItsEventsGoToSys() async throws {
        let harness = try await RuntimeHarness()
        let note = TestEnvironment.unique("note")
        let merchant = TestEnvironment.unique("mch")
        let system = try await EventSubscriber(bindingKey: "sys.ledger.swept")
        let merchants = try await EventSubscriber(bindingKey: "m.\(merchant).ledger.swept")
        let followUps = try await EventSubscriber(exchange: Exchanges.commands, bindingKey: "ledger.post")

        let unscoped = CloudEvent(id: MessageIds.newCommandId(), type: "ledger.sweep", source: "/test", time: nil, merchantId: nil,
                                  data: SweepHandler.Sweep(note: note))
        try await harness.send(unscoped)
        let swept = try #require(await system.wait { $0.contains { $0.correlationId == unscoped.id } }
            .first { $0.correlationId == unscoped.id })
        #expect(swept.routingKey == "sys.ledger.swept")
        #expect(swept.json["merchantid"] == nil)

        // The same system command type, confined to one merchant (a test clock): that merchant's stream.
        let scoped = CloudEvent(id: MessageIds.newCommandId(), type: "ledger.sweep", source: "/test", time: nil, merchantId: merchant,
                                data: SweepHandler.Sweep(note: note + "-scoped"))
        try await harness.send(scoped)
        let mine = try #require(await merchants.wait { !$0.isEmpty }.first)
        #expect(mine.routingKey == "m.\(merchant).ledger.swept")
        #expect(mine.data["merchant"] as? String == merchant)

        // Each published its follow-up command through the outbox, with an id derived from the sweep.
        let published = await followUps.wait { $0.count >= 2 }
        let keys = Set(published.compactMap { $0.json["idempotencykey"] as? String })
        #expect(keys == ["post-\(note)", "post-\(note)-scoped"])
        let fromScoped = try #require(published.first { $0.json["idempotencykey"] as? String == "post-\(note)-scoped" })
        #expect(fromScoped.json["merchantid"] as? String == merchant)
        #expect(fromScoped.correlationId == scoped.id)
        #expect(fromScoped.eventId == MessageIds.commandId(derivedFrom: "\(scoped.id)|\(merchant)|post-\(note)-scoped"))

        // A merchant command still needs its merchant.
        let parked = try await EventSubscriber(exchange: Exchanges.parking, bindingKey: "")
        try await harness.sendRaw(#"{"specversion":"1.0","id":"no-merchant","type":"ledger.post","source":"/t","data":{"account":"a","amount":1}}"#,
                                  messageId: "no-merchant-\(note)")
        #expect(await parked.wait { $0.contains { $0.eventId == "no-merchant-\(note)" } }.contains { $0.eventId == "no-merchant-\(note)" })
        for subscriber in [system, merchants, followUps, parked] { await subscriber.close() }
        await harness.close()
    }

    @Test func aForgedNegativeRetryCountIsClampedSoRetriesStayBounded() async throws {
        let harness = try await RuntimeHarness(maxRetries: 1)
        let parked = try await EventSubscriber(exchange: Exchanges.parking, bindingKey: "")
        let account = TestEnvironment.unique("always-retry")
        let id = MessageIds.newCommandId()
        // Taken at its word, -1000 would never be the final attempt: the command would loop.
        try await harness.sendRaw(#"{"specversion":"1.0","id":"\#(id)","type":"ledger.post","source":"/t","merchantid":"mch_clamp","data":{"account":"\#(account)","amount":1}}"#,
                                  messageId: id, headers: [FleetHeaders.retryCount: .int(-1000)])
        let found = await parked.wait(timeout: .seconds(30)) { $0.contains { $0.eventId == id } }
        let entry = try #require(found.first { $0.eventId == id })
        #expect(entry.headers[FleetHeaders.retryCount] == .int(1), "one retry (0 -> 1), then parked")
        #expect(try await harness.pool.query("SELECT 1 FROM fleet_test_parked WHERE command_id = $1", [id]).rows.count == 1,
                "the handler was told, to give back what it held")
        await parked.close()
        await harness.close()
    }

    @Test func aParkOutcomeCallsTheHandlersParkedOnce() async throws {
        let harness = try await RuntimeHarness()
        let parked = try await EventSubscriber(exchange: Exchanges.parking, bindingKey: "")
        let command = harness.command(account: TestEnvironment.unique("park-now"))
        try await harness.send(command)
        _ = await parked.wait { $0.contains { $0.eventId == command.id } }
        let rows = try await harness.pool.query("SELECT reason FROM fleet_test_parked WHERE command_id = $1", [command.id]).rows
        #expect(try rows.map { try $0.string("reason") } == ["scripted park"])
        // An envelope that never parsed never reached a handler: nothing to give back.
        try await harness.sendRaw("not json", messageId: "unparsed-\(command.id)")
        _ = await parked.wait { $0.contains { $0.eventId == "unparsed-\(command.id)" } }
        #expect(try await harness.pool.query("SELECT 1 FROM fleet_test_parked WHERE command_id = $1", ["unparsed-\(command.id)"]).rows.isEmpty)
        await parked.close()
        await harness.close()
    }

    @Test func theInboxTheOutboxAndTheEventsReadTheInjectedClock() async throws {
        let time = ManualTime(Date(timeIntervalSince1970: 1_893_456_000)) // 2030-01-01T00:00:00Z
        let harness = try await RuntimeHarness(clock: .manual(time))
        let merchant = TestEnvironment.unique("mch")
        let events = try await EventSubscriber(bindingKey: "m.\(merchant).#")
        time.advance(by: 90)
        let command = harness.command(account: TestEnvironment.unique("acct"), merchantId: merchant)
        try await harness.send(command)
        let event = try #require(await events.wait { !$0.isEmpty }.first)
        #expect(event.json["time"] as? String == "2030-01-01T00:01:30.000Z")
        let inbox = try await harness.pool.query("SELECT created_at FROM inbox WHERE merchant_id = $1", [merchant]).rows
        #expect(try inbox.map { try $0.date("created_at") } == [Date(timeIntervalSince1970: 1_893_456_090)])
        await events.close()
        await harness.close()
    }
}
