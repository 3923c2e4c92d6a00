import Foundation
import Payments
import PropertyBased
import Testing

/// Tiers, permissions and advice: each tier x permission is a case of its own.
@Suite struct TierRulesTests {
    enum Permission: String, CaseIterable { case preAuth, multiCurrency }

    static let allowed: [Tier: Set<Permission>] = [
        .starter: [], .business: [.multiCurrency], .enterprise: [.preAuth, .multiCurrency], .premium: [.preAuth, .multiCurrency],
    ]

    @Test(arguments: Tier.allCases, Permission.allCases)
    func permission(tier: Tier, permission: Permission) {
        let granted = switch permission {
        case .preAuth: tier.policy.preAuthorization
        case .multiCurrency: tier.policy.multiCurrency
        }
        #expect(granted == Self.allowed[tier]!.contains(permission))
    }

    @Test(arguments: zip(Tier.allCases, [SettlementCycle.tPlus1, .tPlus1, .tPlus0, .dPlus0]))
    func settlementCycle(tier: Tier, cycle: SettlementCycle) {
        #expect(tier.policy.settlementCycle == cycle)
    }

    @Test(arguments: zip(Tier.allCases, [100, 500, 2_000, 10_000]))
    func apiRate(tier: Tier, perMinute: Int) {
        #expect(tier.policy.apiRequestsPerMinute == perMinute)
    }

    @Test(arguments: zip(Tier.allCases, [Int64(80), 60, 45, 30]))
    func merchantFeeIsBasisPointsHalfUp(tier: Tier, bps: Int64) {
        #expect(tier.policy.feeBasisPoints == bps)
        // 0.45% of 1,111 = 4.9995 -> 5; 0.80% of 1,000,000 = 8,000.
        #expect(tier.policy.fee(for: 1_000_000) == 1_000_000 * bps / 10_000)
    }

    struct AdviceCase: Sendable, CustomTestStringConvertible {
        let current: Tier, volume: Int64, rejections: Int, expected: Tier
        var testDescription: String { "\(current) volume \(volume) rejections \(rejections) -> \(expected)" }
    }

    /// Volumes are minor units of CNY (fen); the monthly limits are major units: starter 300,000 CNY
    /// is 30,000,000 fen.
    @Test(arguments: [
        AdviceCase(current: .starter, volume: 10_000_000, rejections: 0, expected: .starter),     // 100,000 CNY: 125,000 <= 300,000
        AdviceCase(current: .starter, volume: 24_000_000, rejections: 0, expected: .starter),     // 300,000 CNY exactly
        AdviceCase(current: .starter, volume: 24_000_001, rejections: 0, expected: .business),    // 300,000.0125 > 300,000
        AdviceCase(current: .business, volume: 400_000_000, rejections: 0, expected: .enterprise), // 5,000,000 CNY
        AdviceCase(current: .premium, volume: 1_000, rejections: 0, expected: .starter),           // downgrade advice
        AdviceCase(current: .starter, volume: 1_000, rejections: 3, expected: .business),          // rejections win
        AdviceCase(current: .starter, volume: 1_000, rejections: 2, expected: .starter),
        AdviceCase(current: .premium, volume: 1_000, rejections: 5, expected: .premium),           // no tier above
        AdviceCase(current: .business, volume: 3_000_000_000, rejections: 3, expected: .premium),
    ])
    func advice(c: AdviceCase) {
        let advice = TierAdvice.advise(current: c.current, currency: .CNY, trailing30DayVolume: c.volume,
                                       limitExceeded30Days: c.rejections)
        #expect(advice.recommendedTier == c.expected)
        #expect(advice.currentTier == c.current)
        #expect(!advice.reason.isEmpty)
    }
}

/// The limit windows: release, capture and refund rules, and the invariant under any sequence.
@Suite struct LimitLedgerModelTests {
    static let today = LimitWindows(at: Date(timeIntervalSince1970: 1_795_000_000))
    static let tomorrow = LimitWindows(at: Date(timeIntervalSince1970: 1_795_000_000 + 86_400))
    static let limits = EffectiveLimits(tier: .starter, currency: .USD, overrides: LimitOverrides(singleLimit: 400, dailyLimit: 1_000, monthlyLimit: 1_500))

    @Test func reservationsAreKeyedByCommand() throws {
        var ledger = LimitLedgerModel(limits: Self.limits)
        try ledger.reserve("a", amount: 300, in: Self.today)
        try ledger.reserve("a", amount: 300, in: Self.today)
        #expect(ledger.usedToday(Self.today) == 300)
        #expect(throws: LimitLedgerModel.Failure.exceeded("single")) { try ledger.reserve("b", amount: 401, in: Self.today) }
    }

    @Test func releaseGivesBackWhatWasNotCapturedOnce() throws {
        var ledger = LimitLedgerModel(limits: Self.limits)
        try ledger.reserve("preauth", amount: 400, in: Self.today)
        try ledger.capture("preauth", amount: 150)
        try ledger.release("preauth", currentWindows: Self.today)
        try ledger.release("preauth", currentWindows: Self.today)
        #expect(ledger.usedToday(Self.today) == 150)
        #expect(ledger.usedThisMonth(Self.today) == 150)
    }

    @Test func aRefundGoesBackOnlyToAWindowThatIsStillCurrent() throws {
        var ledger = LimitLedgerModel(limits: Self.limits)
        try ledger.reserve("pay", amount: 300, in: Self.today)
        try ledger.capture("pay", amount: 300)
        try ledger.refund("pay", amount: 100, currentWindows: Self.tomorrow)
        #expect(ledger.usedToday(Self.today) == 300, "yesterday's window is closed: nothing back")
        #expect(ledger.usedThisMonth(Self.today) == 200, "the month is still current")
        #expect(throws: LimitLedgerModel.Failure.overRefund) { try ledger.refund("pay", amount: 201, currentWindows: Self.tomorrow) }
    }

    enum Operation: Sendable, CustomStringConvertible {
        case reserve(key: Int, amount: Int64, tomorrow: Bool)
        case capture(key: Int, amount: Int64)
        case release(key: Int, tomorrow: Bool)
        case refund(key: Int, amount: Int64, tomorrow: Bool)
        var description: String {
            switch self {
            case let .reserve(key, amount, tomorrow): "reserve(\(key), \(amount)\(tomorrow ? ", +1d" : ""))"
            case let .capture(key, amount): "capture(\(key), \(amount))"
            case let .release(key, tomorrow): "release(\(key)\(tomorrow ? ", +1d" : ""))"
            case let .refund(key, amount, tomorrow): "refund(\(key), \(amount)\(tomorrow ? ", +1d" : ""))"
            }
        }
    }

    static let operation = zip(Gen.int(in: 0...3), Gen.int(in: 0...7), Gen.int64(in: -50...600), Gen.bool()).map { kind, key, amount, tomorrow in
        switch kind {
        case 0: Operation.reserve(key: key, amount: amount, tomorrow: tomorrow)
        case 1: Operation.capture(key: key, amount: amount)
        case 2: Operation.release(key: key, tomorrow: tomorrow)
        default: Operation.refund(key: key, amount: amount, tomorrow: tomorrow)
        }
    }

    @Test func noSequenceOfOperationsPushesAWindowOutOfBounds() async {
        await propertyCheck(count: 300, input: Self.operation.array(of: 0...60)) { operations in
            var ledger = LimitLedgerModel(limits: Self.limits)
            for operation in operations {
                switch operation {
                case let .reserve(key, amount, tomorrow): try? ledger.reserve("\(key)", amount: amount, in: tomorrow ? Self.tomorrow : Self.today)
                case let .capture(key, amount): try? ledger.capture("\(key)", amount: amount)
                case let .release(key, tomorrow): try? ledger.release("\(key)", currentWindows: tomorrow ? Self.tomorrow : Self.today)
                case let .refund(key, amount, tomorrow): try? ledger.refund("\(key)", amount: amount, currentWindows: tomorrow ? Self.tomorrow : Self.today)
                }
                for windows in [Self.today, Self.tomorrow] {
                    #expect((0...Self.limits.daily).contains(ledger.usedToday(windows)), "day window out of bounds after \(operations)")
                    #expect((0...Self.limits.monthly).contains(ledger.usedThisMonth(windows)), "month window out of bounds after \(operations)")
                }
                for reservation in ledger.reservations.values {
                    #expect(reservation.captured <= reservation.amount && reservation.refunded <= reservation.captured)
                }
            }
        }
    }
}

/// Pre-authorization captures and closings.
@Suite struct PreAuthorizationTests {
    @Test func partialAndRepeatedCapturesUpToTheAuthorizedAmount() throws {
        var preauth = PreAuthorizationAmounts(authorized: 1_000)
        #expect(try preauth.capture(300) == .init(amount: 300, released: 0))
        #expect(preauth.status == .partiallyCaptured)
        #expect(throws: PreAuthorizationAmounts.CaptureError.exceedsRemaining(remaining: 700)) { try preauth.capture(701) }
        #expect(try preauth.capture() == .init(amount: 700, released: 0))
        #expect(preauth.status == .captured)
        #expect(preauth.captureCount == 2)
        #expect(throws: PreAuthorizationAmounts.CaptureError.invalidState(.captured)) { try preauth.capture(1) }
    }

    @Test func finalReleasesTheRestAndCancelReleasesWhatWasNotCaptured() throws {
        var final = PreAuthorizationAmounts(authorized: 1_000)
        #expect(try final.capture(250, final: true) == .init(amount: 250, released: 750))
        var cancelled = PreAuthorizationAmounts(authorized: 1_000)
        _ = try cancelled.capture(100)
        #expect(try cancelled.close(as: .cancelled) == 900)
        #expect(throws: PreAuthorizationAmounts.CaptureError.invalidState(.cancelled)) { try cancelled.close(as: .expired) }
        #expect(throws: IllegalTransition.self) { try PreAuthStatus.expired.transition(to: .authorized) }
        #expect(PreAuthStatus.processing.canTransition(to: .authorized))
    }

    @Test func capturesNeverExceedTheAuthorizedAmount() async {
        await propertyCheck(count: 300, input: Gen.int64(in: 1...10_000),
                            zip(Gen.int64(in: -5...6_000), Gen.bool(0.2)).array(of: 0...20)) { authorized, captures in
            var preauth = PreAuthorizationAmounts(authorized: authorized)
            var total: Int64 = 0
            for (amount, final) in captures {
                if let capture = try? preauth.capture(amount, final: final) { total += capture.amount }
                #expect(preauth.captured == total && total <= authorized)
            }
        }
    }
}

/// Risk: blacklist by each type, and the rules.
@Suite struct RiskTests {
    static let request = PaymentRequest(orderNo: "o", amount: 5_000, currency: .USD, country: "US", payMethod: .card,
                                        customer: Customer(id: "cus_1", email: "Buyer@Example.com", ip: "203.0.113.9"))

    @Test(arguments: [
        BlacklistEntry(type: .customerId, value: "cus_1"), BlacklistEntry(type: .email, value: " buyer@example.COM "),
        BlacklistEntry(type: .ip, value: "203.0.113.9"), BlacklistEntry(type: .country, value: "us"),
    ])
    func aBlacklistedAttributeBlocks(entry: BlacklistEntry) {
        let decision = RiskPolicy(blacklist: [entry]).evaluate(Self.request)
        #expect(decision == .block(rule: "blacklist.\(entry.type.rawValue)", detail: "\(entry.type.rawValue) is blacklisted"))
    }

    @Test func aValueIsTrimmedExactlyAsFoundationTrimsIt() {
        // Ends of every kind: printable ASCII (trimming skipped), ASCII and Unicode spaces and
        // newlines, controls, and letters outside ASCII.
        let ends: [String] = ["a", "Z", "~", "!", " ", "\t", "\n", "\r", "\u{0B}", "\u{0C}", "\u{85}", "\u{A0}", "\u{2003}", "\u{3000}",
                              "\u{7F}", "\u{01}", "é", "中", "\u{1F600}"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let middle = String((0..<Int.random(in: 0...4, using: &generator)).map { _ in Character(ends.randomElement(using: &generator)!) })
            let value = ends.randomElement(using: &generator)! + middle + ends.randomElement(using: &generator)!
            for type in BlacklistType.allCases {
                let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
                let expected = type == .email ? trimmed.lowercased() : type == .country ? trimmed.uppercased() : trimmed
                #expect(BlacklistEntry.normalize(value, as: type) == expected, "\(value.unicodeScalars.map { $0.value })")
            }
        }
        #expect(BlacklistEntry.normalize("", as: .email) == "")
    }

    @Test func otherEntriesDoNotBlock() {
        let policy = RiskPolicy(blacklist: [BlacklistEntry(type: .email, value: "someone@else.com"), BlacklistEntry(type: .country, value: "CN")])
        #expect(policy.evaluate(Self.request) == .allow)
    }

    @Test func maximumAmountPerCurrencyAndVelocity() {
        let policy = RiskPolicy(rules: RiskRules(maxAmount: [.USD: 4_999], velocityLimit: 3, velocityWindowSeconds: 600))
        guard case .block(let rule, _) = policy.evaluate(Self.request) else { Issue.record("not blocked"); return }
        #expect(rule == "max_amount")
        let velocity = RiskPolicy(rules: RiskRules(velocityLimit: 3))
        #expect(velocity.evaluate(Self.request, recentPayments: 2) == .allow)
        guard case .block(let rule, _) = velocity.evaluate(Self.request, recentPayments: 3) else { Issue.record("not blocked"); return }
        #expect(rule == "velocity")
    }
}

/// The circuit breaker and routing invariants.
@Suite struct RoutingPropertyTests {
    @Test func theBreakerSkipsABadChannelForSixtySeconds() {
        var breaker = CircuitBreaker()
        let now = Date(timeIntervalSince1970: 1_000)
        breaker.observe("stripe", stats: ChannelStats(attempts: 20, successes: 9), at: now)
        breaker.observe("paypal", stats: ChannelStats(attempts: 20, successes: 10), at: now)
        #expect(breaker.openChannels(at: now) == ["stripe"])
        #expect(breaker.isOpen("stripe", at: now.addingTimeInterval(59.9)))
        #expect(!breaker.isOpen("stripe", at: now.addingTimeInterval(60)))
        let decision = ChannelRouter(config: .defaults).decide(RoutingInput(amount: 50_000, currency: .USD, country: "US", payMethod: .card),
                                                              openCircuits: breaker.openChannels(at: now), seed: 1)
        #expect(decision.channel == "paypal")
    }

    /// `Gen.element(of:)` is optional only for empty collections; these never are.
    static func one<T: Sendable>(of values: [T]) -> Generator<T, Shrink.None<T?>> { Gen.element(of: values).map { $0! } }

    /// Amounts from the whole range, with tiny ones (where a fixed fee would dominate) well represented.
    static let amount = Gen.oneOf(Gen.int64(in: 1...200), Gen.int64(in: 1...1_000_000), Gen.int64(in: 1...Int64.max))

    static let input = zip(amount, one(of: Currency.allCases), one(of: PayMethod.allCases),
                           one(of: Array(Country.codes)), one(of: RoutingMode.allCases), Gen.uint64(in: 0...UInt64.max))

    @Test func aDecisionAlwaysSupportsTheCurrencyAndPayMethodAndItsFeeNeverExceedsTheAmount() async {
        let router = ChannelRouter(config: .defaults)
        await propertyCheck(count: 500, input: Self.input) { amount, currency, method, country, mode, seed in
            let decision = router.decide(RoutingInput(amount: amount, currency: currency, country: country, payMethod: method, mode: mode),
                                         seed: seed)
            guard let name = decision.channel else {
                #expect(decision.candidates.isEmpty)
                return
            }
            let channel = RoutingConfig.defaults.channels.first { $0.name == name }!
            #expect(channel.currencies.contains(currency) && channel.payMethods.contains(method))
            #expect(decision.estimatedFee.map { $0 >= 0 && $0 <= amount } == true)
        }
    }

    @Test func merchantFeesNeverExceedTheAmount() async {
        await propertyCheck(count: 500, input: Self.amount, Self.one(of: Tier.allCases)) { amount, tier in
            let fee = tier.policy.fee(for: amount)
            #expect(fee.map { $0 >= 0 && $0 <= amount } == true)
        }
    }
}

/// The configuration documents' JSON: what an operator writes.
@Suite struct ConfigurationDocumentTests {
    @Test func riskRulesReadAsOperatorsWriteThem() throws {
        let rules = try JSONDecoder().decode(RiskRules.self, from: Data(#"{"max_amount": {"USD": 500000}, "velocity_limit": 10}"#.utf8))
        #expect(rules == RiskRules(maxAmount: [.USD: 500_000], velocityLimit: 10, velocityWindowSeconds: 3_600))
        #expect(try JSONDecoder().decode(RiskRules.self, from: Data("{}".utf8)) == RiskRules())
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(RiskRules.self, from: Data(#"{"max_amount": {"XXX": 1}}"#.utf8)) }
        let bad = RiskRules(maxAmount: [.EUR: 0], velocityLimit: 0, velocityWindowSeconds: 0)
        #expect(bad.validationErrors.map(\.field) == ["max_amount.EUR", "velocity_limit", "velocity_window_seconds"])
        #expect(rules.validationErrors.isEmpty)
    }

    @Test func fxRatesOverTheDefaults() throws {
        let table = try JSONDecoder().decode(FXTable.self, from: Data(#"{"usd_per_major_scaled": {"EUR": 200000000}}"#.utf8))
        let merged = table.overDefaults()
        #expect(merged.usdPerMajorScaled[.EUR] == 200_000_000)
        #expect(merged.usdPerMajorScaled[.GBP] == FXTable.defaults.usdPerMajorScaled[.GBP])
        #expect(Set(merged.usdPerMajorScaled.keys) == Set(Currency.allCases), "every currency has a rate")
        #expect(merged.convert(100, from: .EUR, to: .USD) == 200)
        #expect(try JSONDecoder().decode(FXTable.self, from: Data("{}".utf8)).overDefaults() == .defaults)
        #expect(FXTable(usdPerMajorScaled: [.JPY: -1]).validationErrors.map(\.field) == ["usd_per_major_scaled.JPY"])
    }
}
