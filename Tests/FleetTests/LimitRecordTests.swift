import Contract
import Foundation
import PayFleetTesting
import Payments
import Postgres
import Redis
import Store
import Testing

/// The durable side of the limits: rebuild after Redis lost the counters, and the background sync.
@Suite struct LimitRecordTests {
    /// What a committed payment writes: its row, and the limit entry when it counts (as the
    /// authorize worker writes them).
    static func insertPayment(merchantId: String, amountBase: Int64, status: String, at date: Date) -> [PostgresStatement] {
        let paymentNo = TestEnvironment.unique("P")
        let row = PostgresStatement("""
            INSERT INTO payments (payment_no, merchant_id, order_no, amount, amount_base, currency, country, pay_method, status,
                                  command_id, limit_key, counted_at, created_at, updated_at)
            VALUES ($1, $2, 'o', $3, $3, 'USD', 'US', 'card', $4, 'c', $1, $5, $5, $5)
            """, [paymentNo, merchantId, amountBase, status, date])
        guard ["succeeded", "pending"].contains(status) else { return [row] }
        return [row, LimitRecord.entry(.reserve, merchantId: merchantId, limitKey: paymentNo, countedAt: date, amount: amountBase,
                                       at: date, ref: paymentNo)]
    }

    /// A day in a future month that only one test uses. A sync pass covers every merchant loaded
    /// in its month, so a pass of another test (or of a worker's background sync) in the current
    /// month would repair this test's counters before its own pass could see them low.
    static func monthOfItsOwn(_ month: Int) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: DateComponents(year: 2031, month: month, day: 10, hour: 12))!
    }

    /// Waits until no transaction older than the merchant's last record entry is still running, so
    /// a sync pass started afterwards has its horizon past every entry (`incrementalRecordSQL`).
    /// Tests in other suites hold transactions open for a while (some sleep inside one): without
    /// this wait, a pass can see the entry as not yet final and record 0.
    static func waitForTheHorizon(pastEntriesOf merchantId: String, _ pool: PostgresPool) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let row = try await pool.query("""
                SELECT pg_snapshot_xmin(pg_current_snapshot()) > (SELECT max(xid) FROM limit_entries WHERE merchant_id = $1) AS past
                """, [merchantId]).rows[0]
            if try row.bool("past") { return }
            guard ContinuousClock.now < deadline else {
                Issue.record("a transaction older than the merchant's entries ran for over 60 seconds")
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func forget(_ merchantId: String, _ redis: RedisClient) async throws {
        let keys = try await redis.command(["KEYS", "pf:lim:{\(merchantId)}:*"]).array?.compactMap(\.string) ?? []
        if !keys.isEmpty { _ = try await redis.command(["DEL"] + keys) }
    }

    /// A new merchant, and a record whose rebuilds wait long for the merchant's lock: on a loaded
    /// machine a test's task may wait seconds for a thread.
    static func patientRecord(poolSize: Int) async throws
        -> (pool: PostgresPool, redis: RedisClient, merchant: String, ledger: LimitLedger, record: LimitRecord) {
        let pool = try TestEnvironment.postgres(size: poolSize)
        let redis = try TestEnvironment.redis()
        let merchant = try await Fixtures.merchant(pool).merchant.merchantId
        let ledger = LimitLedger(redis: redis)
        var record = LimitRecord(ledger: ledger, pool: pool)
        record.lockTimeout = "120s"
        return (pool, redis, merchant, ledger, record)
    }

    @Test func aRebuildWaitsForReservationsInFlightAndCountsWhatCommitted() async throws {
        let (pool, redis, merchant, ledger, record) = try await Self.patientRecord(poolSize: 3)
        let now = Date()
        let windows = LimitWindows(at: now)
        _ = try await pool.withConnection { connection in
            try await connection.batch(Self.insertPayment(merchantId: merchant, amountBase: 250, status: "succeeded", at: now)
                                       + Self.insertPayment(merchantId: merchant, amountBase: 999, status: "failed", at: now))
        }
        let clock = ContinuousClock.now
        // Where the time went, shown if an expectation fails.
        let steps = Steps()
        func mark(_ step: String) { steps.append("\(step) at \(ContinuousClock.now - clock)") }
        #expect(try await record.rebuild(merchantId: merchant, windows: windows))
        mark("first rebuild")
        #expect(try await ledger.usage(merchantId: merchant, windows: windows) == (250, 250), "failed payments never count")

        // A command in flight: its transaction holds the lock shared and has reserved; then Redis loses everything.
        try await pool.withConnection { tx in
            _ = try await tx.batch([.begin, LimitRecord.sharedLock(merchantId: merchant)])
            #expect(try await ledger.reserve(merchantId: merchant, reservationKey: "in-flight", amount: 700,
                                             limits: EffectiveLimits(tier: .premium, currency: .USD), windows: windows) == .reserved)
            mark("reserved")
            try await Self.forget(merchant, redis)
            mark("forgot")
            let rebuild = Task { try await record.rebuild(merchantId: merchant, windows: windows) }
            try await Task.sleep(for: .milliseconds(400))
            mark("slept")
            #expect(try await !ledger.isLoaded(merchantId: merchant, windows: windows), "the rebuild waits for the command in flight: \(steps)")
            mark("checked")
            _ = try await tx.batch(Self.insertPayment(merchantId: merchant, amountBase: 700, status: "succeeded", at: now) + [.commit])
            mark("committed")
            #expect(try await rebuild.value, "\(steps)")
            mark("rebuilt")
        }
        let usage = try await ledger.usage(merchantId: merchant, windows: windows)
        #expect(usage.day == 950 && usage.month == 950, "what committed while the rebuild waited is counted: \(steps)")
        await redis.close()
        await pool.close()
    }

    /// Every command of a merchant in flight finds its counters missing at once; in one process
    /// they take the merchant's lock exclusive once between them, not once each (each in turn
    /// waiting for every reservation in flight, and every new one queued behind them).
    @Test func concurrentRebuildsOfOneMerchantTakeItsLockOnce() async throws {
        let (pool, redis, merchant, ledger, record) = try await Self.patientRecord(poolSize: 10)
        let now = Date()
        let windows = LimitWindows(at: now)
        _ = try await pool.withConnection { try await $0.batch(Self.insertPayment(merchantId: merchant, amountBase: 250, status: "succeeded", at: now)) }
        func waiting() async throws -> Int {
            try await pool.query("""
                SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                AND objid = (hashtext($1)::bigint & 4294967295)::oid AND classid = (hashtext('pf:limits')::bigint & 4294967295)::oid
                """, [merchant]).rows[0].int("n")
        }
        try await pool.withConnection { tx in
            // A reservation in flight holds the lock shared, so the rebuilds wait.
            _ = try await tx.batch([.begin, LimitRecord.sharedLock(merchantId: merchant)])
            let rebuilds = (0..<8).map { _ in Task { try await record.rebuild(merchantId: merchant, windows: windows) } }
            let deadline = ContinuousClock.now + .seconds(60)
            while try await waiting() == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            // Time for the other seven to queue on the lock too, were they to take it.
            try await Task.sleep(for: .milliseconds(500))
            let waiters = try await waiting()
            #expect(waiters == 1, "one rebuild waits on the merchant's lock, the others for it: \(waiters) on the lock")
            _ = try await tx.batch([.commit])
            var loaded = 0
            for rebuild in rebuilds where try await rebuild.value { loaded += 1 }
            #expect(loaded == 1, "one call loaded the counters")
        }
        #expect(try await ledger.usage(merchantId: merchant, windows: windows) == (250, 250))
        // Once it finished, the next rebuild runs on its own (and finds them loaded).
        #expect(try await !record.rebuild(merchantId: merchant, windows: windows))
        await redis.close()
        await pool.close()
    }

    /// The sync finds the merchants to sync in the month's list, which every load adds to, instead
    /// of walking every key in Redis (`SCAN`: with three days of reservation records that cost
    /// Redis 2.4 s a pass). Markers set before lists existed are found by one `SCAN` a month; a
    /// listed merchant whose marker is gone is skipped.
    @Test func theSyncListsTheMonthsLoadedMerchantsWithoutWalkingEveryKey() async throws {
        let pool = try TestEnvironment.postgres(size: 2)
        let redis = try TestEnvironment.redis()
        let ledger = LimitLedger(redis: redis)
        let record = LimitRecord(ledger: ledger, pool: pool)
        let windows = LimitWindows(at: Self.monthOfItsOwn(7))
        let list = "pf:lim:index:loaded:\(windows.month)", complete = "pf:lim:index:complete:\(windows.month)"
        // An earlier run's, on a developer's Redis: the list, and the markers a SCAN would find.
        let stale = try await redis.command(["KEYS", "pf:lim:{*}:loaded:\(windows.month)"]).array?.compactMap(\.string) ?? []
        _ = try await redis.command(["DEL", list, complete] + stale)
        func marker(_ merchantId: String) -> String { "pf:lim:{\(merchantId)}:loaded:\(windows.month)" }

        let earlier = TestEnvironment.unique("mch_earlier")   // loaded by a release without lists
        _ = try await redis.command(["SET", marker(earlier), "1", "EX", "3600"])
        let loaded = try await Fixtures.merchant(pool).merchant.merchantId
        #expect(try await record.rebuild(merchantId: loaded, windows: windows))
        #expect(try await redis.command(["SISMEMBER", list, loaded]).int == 1, "a load lists its merchant")
        let crashed = TestEnvironment.unique("mch_crashed")   // listed, then the process died before loading
        _ = try await redis.command(["SADD", list, crashed])

        let first = try await ledger.loadedMerchants(windows: windows)
        #expect(first == [earlier, loaded].sorted(), "the list, the earlier marker, not the merchant never loaded")
        #expect(try await redis.command(["EXISTS", complete]).int == 1)
        #expect(try await redis.command(["SISMEMBER", list, earlier]).int == 1, "the earlier marker joined the list")

        // From now on the list is what counts: a marker set behind its back is not looked for.
        let behind = TestEnvironment.unique("mch_behind")
        _ = try await redis.command(["SET", marker(behind), "1", "EX", "3600"])
        #expect(try await ledger.loadedMerchants(windows: windows) == [earlier, loaded].sorted(), "no second SCAN")
        #expect(try await record.sync(at: Self.monthOfItsOwn(7)).merchants == 2)
        // A list lost on its own (evicted) is made again from the markers.
        _ = try await redis.command(["DEL", list])
        #expect(try await ledger.loadedMerchants(windows: windows) == [behind, earlier, loaded].sorted(), "a SCAN again")
        _ = try await redis.command(["DEL", marker(earlier), marker(behind)])
        await redis.close()
        await pool.close()
    }

    /// Redis `appendfsync everysec`: after a crash the counter may have lost an increment while
    /// the month's marker survived. The sync finds it below the record and raises it back.
    @Test func theSyncWritesUsageAndRepairsCountersBelowTheRecord() async throws {
        let pool = try TestEnvironment.postgres(size: 2)
        let redis = try TestEnvironment.redis()
        let merchant = try await Fixtures.merchant(pool).merchant.merchantId
        let ledger = LimitLedger(redis: redis)
        let record = LimitRecord(ledger: ledger, pool: pool)
        let now = Self.monthOfItsOwn(3)
        let windows = LimitWindows(at: now)
        _ = try await pool.withConnection { try await $0.batch(Self.insertPayment(merchantId: merchant, amountBase: 400, status: "pending", at: now)) }
        try await record.rebuild(merchantId: merchant, windows: windows)
        _ = try await ledger.reserve(merchantId: merchant, reservationKey: "x", amount: 100, limits: EffectiveLimits(tier: .premium, currency: .USD), windows: windows)
        try await Self.waitForTheHorizon(pastEntriesOf: merchant, pool)

        var result = try await record.sync(at: now)
        #expect(result.merchants >= 1 && !result.undercounted.contains(merchant))
        let rows = try await pool.query("SELECT window_kind, used, recorded FROM limit_usage WHERE merchant_id = $1 ORDER BY window_kind",
                                        [merchant]).rows
        #expect(try rows.map { [try $0.string("window_kind"), String(try $0.int64("used")), String(try $0.int64("recorded"))] }
                == [["day", "500", "400"], ["month", "500", "400"]])

        _ = try await redis.command(["DECRBY", "pf:lim:{\(merchant)}:d:\(windows.day)", "200"])
        #expect(try await ledger.usage(merchantId: merchant, windows: windows) == (300, 500), "lost 200 of the day")
        result = try await record.sync(at: now)
        #expect(result.undercounted.contains(merchant))
        #expect(try await ledger.usage(merchantId: merchant, windows: windows) == (400, 500),
                "raised to the record (the 100 in flight is not recorded, so it stays lost until the window ends)")
        result = try await record.sync(at: now)
        #expect(!result.undercounted.contains(merchant), "repaired: the next pass finds nothing")
        await redis.close()
        await pool.close()
    }

    /// A pass adds only what committed since the last one, through a horizon no running
    /// transaction is below: an entry of a transaction still open when a pass ran is counted by a
    /// later pass, once, and so is every entry committed after it.
    @Test func theSyncCountsAnEntryOfATransactionOpenDuringAPassExactlyOnce() async throws {
        let pool = try TestEnvironment.postgres(size: 3)
        let redis = try TestEnvironment.redis()
        let merchant = try await Fixtures.merchant(pool).merchant.merchantId
        let ledger = LimitLedger(redis: redis)
        let record = LimitRecord(ledger: ledger, pool: pool)
        let now = Self.monthOfItsOwn(5)
        let windows = LimitWindows(at: now)
        func recorded() async throws -> [Int64] {
            try await pool.query("SELECT recorded FROM limit_usage WHERE merchant_id = $1 ORDER BY window_kind", [merchant]).rows
                .map { try $0.int64("recorded") }
        }
        // Other tests' transactions may hold the horizon back for a while: passes until `target`.
        func syncUntil(_ target: [Int64]) async throws -> [[Int64]] {
            let deadline = ContinuousClock.now + .seconds(60)
            var seen: [[Int64]] = []
            while ContinuousClock.now < deadline {
                _ = try await record.sync(at: now)
                seen.append(try await recorded())
                if seen.last == target { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            return seen
        }
        _ = try await pool.withConnection { try await $0.batch(Self.insertPayment(merchantId: merchant, amountBase: 400, status: "succeeded", at: now)) }
        try await record.rebuild(merchantId: merchant, windows: windows)
        let first = try await syncUntil([400, 400])
        #expect(first.last == [400, 400] && first.allSatisfy { [[0, 0], [400, 400]].contains($0) },
                "the first pass sums the window in full, through its horizon: \(first)")

        try await pool.withConnection { open in
            // Written first, committed last: its transaction id is below the next entry's.
            _ = try await open.batch([.begin] + Self.insertPayment(merchantId: merchant, amountBase: 300, status: "succeeded", at: now))
            _ = try await pool.withConnection { try await $0.batch(Self.insertPayment(merchantId: merchant, amountBase: 50, status: "pending", at: now)) }
            _ = try await record.sync(at: now)
            #expect(try await recorded() == [400, 400], "nothing at or above the open transaction is counted yet")
            _ = try await open.batch([.commit])
        }
        let seen = try await syncUntil([750, 750])
        #expect(seen.last == [750, 750], "both entries counted once the horizon passed them: \(seen)")
        #expect(seen.allSatisfy { [[400, 400], [700, 700], [750, 750]].contains($0) }, "never the later entry without the earlier: \(seen)")
        _ = try await record.sync(at: now)
        _ = try await record.sync(at: now)
        #expect(try await recorded() == [750, 750], "later passes add nothing twice")
        let full = try await pool.withConnection { try await LimitRecord.recorded(merchantId: merchant, windows: windows, on: $0) }
        #expect(full == (750, 750), "the same as summing the record in full")
        await redis.close()
        await pool.close()
    }
}

/// Cache-aside with generation-guarded fills, the configuration documents and the risk inputs.
@Suite struct CacheTests {
    @Test func aWriteInvalidatesAtOnceAndAStaleFillIsDropped() async throws {
        let redis = try TestEnvironment.redis()
        let cache = CacheAside(redis: redis)
        let key = TestEnvironment.unique("pf:test:cache")
        let loads = Counter()
        #expect(try await cache.value(key, ttl: .init(seconds: 60)) { loads.add(); return "v1" } == "v1")
        #expect(try await cache.value(key, ttl: .init(seconds: 60)) { loads.add(); return "v2" } == "v1", "a hit does not load")
        #expect(loads.value == 1)

        // A reader that loaded before a write committed must not put the old value back.
        let staleRead = try #require(await cache.read([key])?.first)
        try await cache.invalidate([key])
        await cache.fill(staleRead, with: "old", ttl: .init(seconds: 60))
        #expect(try await cache.value(key, ttl: .init(seconds: 60)) { "v3" } == "v3")
        let ttl = try await redis.command(["TTL", key]).int ?? 0
        #expect((1...60).contains(ttl), "filled with its TTL")
        await redis.close()
    }

    @Test func documentsAndTheBlacklistApplyToTheNextReadAfterAWrite() async throws {
        let pool = try TestEnvironment.postgres(size: 2)
        let redis = try TestEnvironment.redis()
        try await Migrations.apply(to: pool, logger: TestEnvironment.logger)
        let configuration = Configuration(redis: redis)
        let email = BlacklistEntry(type: .email, value: TestEnvironment.unique("someone") + "@example.com")
        let country = BlacklistEntry(type: .country, value: "US")
        func policy() async throws -> RiskPolicy {
            try await pool.withConnection { try await configuration.riskPolicy(for: [email, country], on: $0) }
        }
        #expect(try await !policy().blacklist.contains(email))
        #expect(try await !policy().blacklist.contains(email), "cached as not listed")
        try await configuration.addToBlacklist(email, pool: pool)
        #expect(try await policy().blacklist.contains(email), "the next read after the write")
        try await configuration.removeFromBlacklist(email, pool: pool)
        #expect(try await !policy().blacklist.contains(email))

        // The fleet's own risk rules are fleet-wide (FleetWideRiskRulesTests); this one is a document of its own.
        let document = SettingsDocument<RiskRules>(name: TestEnvironment.unique("test_rules"), ttl: .risk, defaults: RiskRules(),
                                                   validate: { $0.validationErrors })
        #expect(try await configuration.document(document, pool: pool) == (RiskRules(), 0), "the defaults until one is stored")
        let rules = RiskRules(maxAmount: [.USD: 123_456], velocityLimit: 5, velocityWindowSeconds: 60)
        #expect(try await configuration.set(document, to: rules, pool: pool) == 1)
        #expect(try await configuration.document(document, pool: pool) == (rules, 1), "the next read after the write")
        let changed = RiskRules(maxAmount: [.EUR: 1], velocityLimit: nil)
        #expect(try await configuration.set(document, to: changed, pool: pool) == 2)
        #expect(try await configuration.document(document, pool: pool) == (changed, 2))
        await #expect(throws: ValidationFailure.self) {
            try await configuration.set(document, to: RiskRules(velocityLimit: 0), pool: pool)
        }
        #expect(try await configuration.document(document, pool: pool).version == 2, "a refused document changes nothing")
        await redis.close()
        await pool.close()
    }

    @Test func velocityCountsEachCommandOnceAndStopsAtTheLimit() async throws {
        let redis = try TestEnvironment.redis()
        let velocity = VelocityCounter(redis: redis)
        let merchant = TestEnvironment.unique("mch")
        let now = Date()
        func count(_ key: String) async throws -> Int {
            try await velocity.count(merchantId: merchant, customerId: "cus-1", commandKey: key, limit: 3, windowSeconds: 60, at: now)
        }
        #expect(try await count("a") == 0)
        #expect(try await count("a") == 0, "a redelivery counts once")
        #expect(try await count("b") == 1)
        #expect(try await count("c") == 2)
        #expect(try await count("d") == 3, "the fourth sees three others: blocked")
        #expect(try await count("e") == 3, "a blocked one did not count")
        let later = try await velocity.count(merchantId: merchant, customerId: "cus-1", commandKey: "f", limit: 3, windowSeconds: 60,
                                             at: now.addingTimeInterval(61))
        #expect(later == 0, "the window slid past them")
        await redis.close()
    }
}

/// Steps of a test with their times, for its failure messages.
final class Steps: @unchecked Sendable, CustomStringConvertible {
    private let lock = NSLock()
    private var steps: [String] = []
    func append(_ step: String) { lock.withLock { steps.append(step) } }
    var description: String { lock.withLock { steps.joined(separator: "; ") } }
}

/// A thread-safe counter for closures.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
