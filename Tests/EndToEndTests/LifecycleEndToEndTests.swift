import AMQP
import Contract
import Foundation
import PayFleetTesting
import Payments
import Postgres
import Redis
import Store
import Testing

extension EndToEnd {
/// The payment lifecycle on the real executables: pre-authorizations, captures, cancels,
/// refunds, channel results, timeouts and expiry.
@Suite(.serialized) struct LifecycleEndToEndTests {
    /// The README's hotel deposit: authorize 1,000.00, capture 300.00, cancel the rest, refund 50.00.
    @Test func theHotelDeposit() async throws {
        let fleet = try await LifecycleFleet.start(workers: ["authorize", "capture"])
        defer { Task { await fleet.stop() } }
        let (merchantId, apiKey) = try await fleet.merchant(tier: "enterprise")
        let events = try await EventSubscriber.outcomes(of: merchantId)

        let held = try await fleet.preAuth(apiKey, amount: 100_000)
        #expect(held.status == 201, "\(held.text)")
        #expect(held.json["status"] as? String == "authorized" && held.json["amount"] as? Int == 100_000)
        let number = try #require(held.json["pre_auth_no"] as? String)
        #expect(held.header("Location") == "/api/v1/merchant/pre-auth/\(number)")
        #expect(try await fleet.usedToday(apiKey) == 100_000, "the whole hold counts")

        let captured = try await fleet.post(apiKey, "/api/v1/merchant/pre-auth/capture", ["pre_auth_no": number, "amount": 30_000])
        #expect(captured.status == 201, "\(captured.text)")
        #expect(captured.json["status"] as? String == "succeeded" && captured.json["amount"] as? Int == 30_000)
        #expect(captured.json["pre_auth_no"] as? String == number)
        let paymentNo = try #require(captured.json["payment_no"] as? String)
        let partly = try await fleet.get(apiKey, "/api/v1/merchant/pre-auth/\(number)").json
        #expect(partly["status"] as? String == "partially_captured" && partly["captured_amount"] as? Int == 30_000
                && partly["capture_count"] as? Int == 1 && partly["version"] as? Int == 2)

        let cancelled = try await fleet.post(apiKey, "/api/v1/merchant/pre-auth/cancel", ["pre_auth_no": number, "reason": "guest checked out"])
        #expect(cancelled.status == 201, "\(cancelled.text)")
        #expect(cancelled.json["status"] as? String == "cancelled" && cancelled.json["released_amount"] as? Int == 70_000)
        #expect(try await fleet.usedToday(apiKey) == 30_000, "what was not captured came back")

        let refunded = try await fleet.post(apiKey, "/api/v1/payments/\(paymentNo)/refunds", ["amount": 5_000, "reason": "minibar"])
        #expect(refunded.status == 201, "\(refunded.text)")
        #expect(refunded.json["status"] as? String == "partially_refunded" && refunded.json["refunded_amount"] as? Int == 5_000)
        #expect(try await fleet.usedToday(apiKey) == 25_000, "the refund went back to today's window")

        // What can no longer happen is invalid_state (422), and changes nothing.
        let late = try await fleet.post(apiKey, "/api/v1/merchant/pre-auth/capture", ["pre_auth_no": number, "amount": 1_000])
        #expect(late.status == 422 && late.json["code"] as? String == "invalid_state", "\(late.text)")
        let tooMuch = try await fleet.post(apiKey, "/api/v1/payments/\(paymentNo)/refunds", ["amount": 25_001])
        #expect(tooMuch.status == 422 && tooMuch.json["code"] as? String == "invalid_state", "\(tooMuch.text)")
        let unknown = try await fleet.post(apiKey, "/api/v1/merchant/pre-auth/capture", ["pre_auth_no": "pa_aaaaaaaaaaaaaaaaaaaaaaaaaa"])
        #expect(unknown.status == 404)
        let rest = try await fleet.post(apiKey, "/api/v1/payments/\(paymentNo)/refunds", [:])
        #expect(rest.json["status"] as? String == "refunded" && rest.json["refunded_amount"] as? Int == 30_000, "the default refunds the rest")

        // Each resource's events in the order its changes committed (CONTRACT §2; two resources'
        // events are not ordered with each other).
        let received = await events.wait { $0.filter { $0.type == "payment.refunded" }.count >= 2 }
        #expect(received.filter { $0.data["pre_auth_no"] as? String == number && $0.data["payment_no"] == nil }.map(\.type)
                == ["preauth.authorized", "preauth.captured", "preauth.cancelled"])
        #expect(received.filter { $0.data["payment_no"] as? String == paymentNo }.map(\.type)
                == ["payment.succeeded", "payment.refunded", "payment.refunded"])
        #expect(received.filter { $0.data["payment_no"] as? String == paymentNo }.compactMap { $0.data["version"] as? Int } == [1, 2, 3])
        let cancelEvent = try #require(events.events.first { $0.type == "preauth.cancelled" })
        #expect(cancelEvent.data["released_amount"] as? Int == 70_000 && cancelEvent.data["version"] as? Int == 3)

        // Tiers below enterprise cannot hold; a hold longer than 30 days is refused.
        let (_, starterKey) = try await fleet.merchant(tier: "business")
        let forbidden = try await fleet.preAuth(starterKey, amount: 1_000)
        #expect(forbidden.status == 403 && forbidden.json["code"] as? String == "tier_forbidden", "\(forbidden.text)")
        #expect((forbidden.json["pre_authorization"] as? [String: Any])?["status"] as? String == "failed")
        let tooLong = try await fleet.preAuth(apiKey, amount: 1_000, expiresIn: 31 * 86_400)
        #expect(tooLong.status == 400 && (tooLong.json["errors"] as? [[String: Any]])?.first?["field"] as? String == "expires_in_seconds")
        await events.close()
    }

    /// Lists: filtered by status, newest first, and a cursor never skips or repeats a row while
    /// rows are added.
    @Test func preAuthorizationsArePagedWithoutSkipsOrRepeats() async throws {
        let fleet = try await LifecycleFleet.start(workers: ["authorize", "capture"])
        defer { Task { await fleet.stop() } }
        let (_, apiKey) = try await fleet.merchant(tier: "premium")
        var created: [String] = []
        for _ in 0..<5 { created.append(try #require(try await fleet.preAuth(apiKey, amount: 2_000).json["pre_auth_no"] as? String)) }
        _ = try await fleet.post(apiKey, "/api/v1/merchant/pre-auth/cancel", ["pre_auth_no": created[0], "reason": "x"])

        var seen: [String] = [], cursor: String?
        repeat {
            let page = try await fleet.get(apiKey, "/api/v1/merchant/pre-auths?status=authorized&limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""))
            #expect(page.status == 200, "\(page.text)")
            seen += (page.json["data"] as? [[String: Any]] ?? []).compactMap { $0["pre_auth_no"] as? String }
            cursor = page.json["next_cursor"] as? String
            // A new one arrives between pages: newer than any cursor, it never enters this walk.
            if seen.count == 2 { created.append(try #require(try await fleet.preAuth(apiKey, amount: 2_000).json["pre_auth_no"] as? String)) }
        } while cursor != nil
        #expect(seen == Array(created[1...4].reversed()), "newest first, each once")
        #expect(try await fleet.get(apiKey, "/api/v1/merchant/pre-auths?status=pending").status == 400)
        #expect(try await fleet.get(apiKey, "/api/v1/merchant/pre-auths?cursor=bm90LWEtY3Vyc29y").status == 400)
    }

    /// 20 concurrent captures of 1,000 on a hold of 10,000: exactly 10 succeed, never more.
    @Test func twentyConcurrentCapturesNeverExceedTheHold() async throws {
        let fleet = try await LifecycleFleet.start(workers: ["authorize", "capture"])
        defer { Task { await fleet.stop() } }
        let (_, apiKey) = try await fleet.merchant(tier: "premium")
        let number = try #require(try await fleet.preAuth(apiKey, amount: 10_000).json["pre_auth_no"] as? String)
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<20 {
                group.addTask { try await fleet.post(apiKey, "/api/v1/merchant/pre-auth/capture", ["pre_auth_no": number, "amount": 1_000]).status }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses.filter { $0 == 201 }.count == 10 && statuses.filter { $0 == 422 }.count == 10, "\(statuses.sorted())")
        let after = try await fleet.get(apiKey, "/api/v1/merchant/pre-auth/\(number)").json
        #expect(after["status"] as? String == "captured" && after["captured_amount"] as? Int == 10_000 && after["capture_count"] as? Int == 10)
        #expect(try await fleet.usedToday(apiKey) == 10_000)
    }

    /// A capture racing the expiry sweep: for each of six holds, exactly one of them wins.
    @Test func aCaptureRacingTheExpirySweepHasOneWinner() async throws {
        let fleet = try await LifecycleFleet.start(workers: ["authorize", "capture", "expire"])
        defer { Task { await fleet.stop() } }
        let (merchantId, apiKey) = try await fleet.merchant(tier: "premium")
        let events = try await EventSubscriber.outcomes(of: merchantId)
        var holds: [String] = []
        for _ in 0..<6 { holds.append(try #require(try await fleet.preAuth(apiKey, amount: 4_000, expiresIn: 60).json["pre_auth_no"] as? String)) }
        // The captures run on the real clock (the holds are alive); the sweep's test clock says
        // they ended a day ago. Only the row lock and the conditional update decide.
        let racing = holds
        async let captures = withThrowingTaskGroup(of: (String, Int).self) { group in
            for number in racing {
                group.addTask { (number, try await fleet.post(apiKey, "/api/v1/merchant/pre-auth/capture", ["pre_auth_no": number]).status) }
            }
            return try await group.reduce(into: [String: Int]()) { $0[$1.0] = $1.1 }
        }
        _ = try await fleet.sweep("preauth.expire", merchantId: merchantId, now: Date().addingTimeInterval(86_400))
        let captureStatus = try await captures
        _ = await events.wait { received in holds.allSatisfy { number in
            received.contains { ($0.type == "preauth.expired" || $0.type == "preauth.captured") && $0.data["pre_auth_no"] as? String == number }
        } }
        var expired = 0
        for number in holds {
            let hold = try await fleet.get(apiKey, "/api/v1/merchant/pre-auth/\(number)").json
            switch hold["status"] as? String {
            case "captured"?:
                #expect(captureStatus[number] == 201 && hold["captured_amount"] as? Int == 4_000 && hold["released_amount"] as? Int == 0)
            case "expired"?:
                expired += 1
                #expect(captureStatus[number] == 422 && hold["captured_amount"] as? Int == 0 && hold["released_amount"] as? Int == 4_000)
            default:
                Issue.record("\(number) ended as \(hold["status"] ?? "nothing")")
            }
        }
        // Each race has exactly one loser, told invalid_state: the capture (422) or that hold's expiry.
        let losers = await events.wait { $0.filter { $0.type == "command.rejected" }.count >= 6 }
            .filter { $0.type == "command.rejected" }
        #expect(losers.count == 6 && losers.allSatisfy { $0.data["code"] as? String == "invalid_state" }, "\(losers.map(\.data))")
        #expect(try await fleet.usedToday(apiKey) == (6 - expired) * 4_000, "captured holds count, expired ones came back")
        await events.close()
    }

    /// notify: a missing or bad signature changes nothing; a good one completes the pending
    /// payment once, however often it is sent; a failure releases the limit.
    @Test func aChannelsNotifyIsSignedAndTakesEffectOnce() async throws {
        let fleet = try await LifecycleFleet.start(workers: ["authorize"])
        defer { Task { await fleet.stop() } }
        let (merchantId, apiKey) = try await fleet.merchant(tier: "premium")
        let pool = try TestEnvironment.postgres(size: 1)
        defer { Task { await pool.close() } }
        let events = try await EventSubscriber(bindingKey: "m.\(merchantId).payment.#")
        let pending = try await fleet.pay(apiKey, amount: 7_052)
        #expect(pending.status == 201 && pending.json["status"] as? String == "pending", "\(pending.text)")
        let paymentNo = try #require(pending.json["payment_no"] as? String)
        let channel = try #require(pending.json["channel"] as? String)
        let result: [String: Any] = ["payment_no": paymentNo, "result": "succeeded", "channel_ref": "ch_77"]

        #expect(try await fleet.notify(channel: channel, result, secret: nil).status == 401)
        let forged = try await fleet.notify(channel: channel, result, secret: "not-the-channel-secret-at-all")
        #expect(forged.status == 401 && forged.json["code"] as? String == "invalid_signature")
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await fleet.get(apiKey, "/api/v1/payments/\(paymentNo)").json["status"] as? String == "pending", "nothing changed")
        #expect(try await pool.query("SELECT 1 FROM payment_callbacks WHERE payment_no = $1", [paymentNo]).rows.isEmpty, "nothing kept")
        #expect(try await fleet.notify(channel: "crypto", result).status == 404, "another channel's payment")

        #expect(try await fleet.notify(channel: channel, result).status == 200)
        #expect(try await fleet.notify(channel: channel, result).status == 200, "a channel may send it again")
        #expect(try await eventually { try await fleet.get(apiKey, "/api/v1/payments/\(paymentNo)").json["status"] as? String == "succeeded" })
        _ = await events.wait { $0.contains { $0.type == "payment.succeeded" } }
        // Whatever the second notify caused has had time to arrive too.
        try await Task.sleep(for: .milliseconds(500))
        let succeeded = events.events.filter { $0.type == "payment.succeeded" }
        #expect(Set(succeeded.map(\.eventId)).count == 1 && succeeded.first?.data["version"] as? Int == 2, "one effect")
        #expect(try await pool.query("SELECT 1 FROM payment_callbacks WHERE payment_no = $1", [paymentNo]).rows.count == 2, "both kept raw")
        #expect(try await fleet.usedToday(apiKey) == 7_052)

        // A failure releases what the pending payment reserved.
        let other = try await fleet.pay(apiKey, amount: 3_052)
        let otherNo = try #require(other.json["payment_no"] as? String)
        #expect(try await fleet.usedToday(apiKey) == 10_104)
        #expect(try await fleet.notify(channel: channel, ["payment_no": otherNo, "result": "failed", "channel_ref": "ch_78"]).status == 200)
        #expect(try await eventually { try await fleet.get(apiKey, "/api/v1/payments/\(otherNo)").json["status"] as? String == "failed" })
        #expect(try await fleet.usedToday(apiKey) == 7_052)
        await events.close()
    }

    /// A pending payment times out (the sweep on a test clock), releases its limit, and a
    /// success reported after that is given back at the channel, not taken.
    @Test func aPendingPaymentTimesOutAndALateSuccessIsReversed() async throws {
        let fleet = try await LifecycleFleet.start(workers: ["authorize", "timeout"])
        defer { Task { await fleet.stop() } }
        let (merchantId, apiKey) = try await fleet.merchant(tier: "premium")
        let events = try await EventSubscriber.outcomes(of: merchantId)
        let pending = try await fleet.pay(apiKey, amount: 8_052)
        let paymentNo = try #require(pending.json["payment_no"] as? String)
        #expect(try await fleet.usedToday(apiKey) == 8_052)

        // Ten minutes on: not due, nothing happens.
        _ = try await fleet.sweep("payment.timeout", merchantId: merchantId, now: Date().addingTimeInterval(600))
        let early = await events.wait { $0.contains { $0.type == "sweep.completed" } }
        #expect(early.first { $0.type == "sweep.completed" }?.data["due"] as? Int == 0)
        // Thirty-one minutes on: it times out.
        _ = try await fleet.sweep("payment.timeout", merchantId: merchantId, now: Date().addingTimeInterval(31 * 60))
        let timedOut = try #require(await events.wait { $0.contains { $0.type == "payment.timed_out" } }.first { $0.type == "payment.timed_out" })
        #expect(timedOut.data["status"] as? String == "cancelled" && timedOut.data["failure_code"] as? String == "timeout")
        #expect(timedOut.routingKey == "m.\(merchantId).payment.timed_out")
        #expect(try await fleet.usedToday(apiKey) == 0, "its limit came back")

        // The channel's success arrives after all: recorded, reversed at the channel, never taken.
        let channel = try #require(pending.json["channel"] as? String)
        #expect(try await fleet.notify(channel: channel, ["payment_no": paymentNo, "result": "succeeded", "channel_ref": "late"]).status == 200)
        let reversed = try #require(await events.wait { $0.contains { $0.type == "payment.reversed" } }.first { $0.type == "payment.reversed" })
        #expect(reversed.data["status"] as? String == "cancelled" && reversed.data["version"] as? Int == 3)
        #expect(try await fleet.usedToday(apiKey) == 0)
        let pool = try TestEnvironment.postgres(size: 1)
        let reversal = try await SandboxChannelsProbe.calls(pool, channel: channel, key: ChannelKeys.reversal(paymentNo))
        #expect(reversal == 1, "one compensating refund at the channel")
        await pool.close()
        await events.close()
    }

    /// `54`: the channel did not answer; the payment stays pending with its channel state
    /// unknown, and the timeout sweep asks the channel, which says it succeeded.
    @Test func aPaymentTheChannelNeverAnsweredIsResolvedByTheSweepsQuery() async throws {
        let fleet = try await LifecycleFleet.start(workers: ["authorize", "timeout"])
        defer { Task { await fleet.stop() } }
        let (merchantId, apiKey) = try await fleet.merchant(tier: "premium")
        let events = try await EventSubscriber(bindingKey: "m.\(merchantId).payment.#")
        let silent = try await fleet.pay(apiKey, amount: 9_054)
        #expect(silent.json["status"] as? String == "pending", "\(silent.text)")
        let paymentNo = try #require(silent.json["payment_no"] as? String)
        _ = try await fleet.sweep("payment.timeout", merchantId: merchantId, now: Date().addingTimeInterval(31 * 60))
        let done = try #require(await events.wait { $0.contains { $0.type == "payment.succeeded" } }.first { $0.type == "payment.succeeded" })
        #expect(done.data["payment_no"] as? String == paymentNo && done.data["version"] as? Int == 2)
        #expect(!events.events.contains { $0.type == "payment.timed_out" })
        #expect(try await fleet.usedToday(apiKey) == 9_054)
    }

    /// A crash right after the channel took the money and before the commit: the redelivered
    /// command asks the channel instead of charging again. One call for the key, one payment.
    @Test func aCrashBetweenTheChargeAndTheCommitChargesOnce() async throws {
        let once = NSTemporaryDirectory() + "payfleet-fault-\(UUID().uuidString)"
        let fleet = try await LifecycleFleet.start(workers: [], extra: [:])
        defer { Task { await fleet.stop() } }
        let port = FleetProcess.freePort()
        let worker = try FleetProcess("payfleet-authorize", environment: [
            "PAYFLEET_HEALTH_PORT": "\(port)", "PAYFLEET_FAULT_CRASH_AT": "after-channel-call", "PAYFLEET_FAULT_ONCE": once,
        ])
        defer { worker.stop() }
        try await worker.waitUntilReady(port: port)
        let (merchantId, _) = try await fleet.merchant(tier: "premium")
        let pool = try TestEnvironment.postgres(size: 1)
        let command = Fixtures.paymentCommand(merchantId: merchantId, amount: 12_345)
        try await Fixtures.publishAll([try Fixtures.message(command)], on: fleet.broker)
        #expect(await eventually(timeout: .seconds(30)) { !worker.isRunning }, "it crashed at the fault point")
        #expect(worker.log.contains("crashing at after-channel-call"))
        #expect(try await Fixtures.paymentCount(pool, merchantId) == 0, "nothing committed")
        try worker.restart()
        #expect(try await eventually(timeout: .seconds(60)) { try await Fixtures.paymentCount(pool, merchantId) == 1 })
        let paymentNo = Identifiers.paymentNo(merchantId: merchantId, idempotencyKey: command.id)
        let row = try #require(try await pool.query("SELECT status, channel FROM payments WHERE payment_no = $1", [paymentNo]).first)
        #expect(try row.string("status") == "succeeded")
        #expect(try await SandboxChannelsProbe.calls(pool, channel: try row.string("channel"), key: ChannelKeys.authorize(paymentNo)) == 1,
                "the channel saw one call for that key")
        await pool.close()
    }
}
}

/// Reads the sandbox channels' own memory.
enum SandboxChannelsProbe {
    static func calls(_ pool: PostgresPool, channel: String, key: String) async throws -> Int {
        try await pool.query("SELECT calls FROM sandbox_channel_calls WHERE channel = $1 AND idempotency_key = $2", [channel, key])
            .first?.int("calls") ?? 0
    }
}
