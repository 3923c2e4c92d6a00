import Payments
import Testing

@Suite struct RoutingTests {
    let router = ChannelRouter(config: .defaults)

    @Test func seedExampleRoutesToStripeOnGeography() {
        let decision = router.decide(RoutingInput(amount: 50_000, currency: .USD, country: "US", payMethod: .card), seed: 1)
        #expect(decision.channel == "stripe")
        #expect(decision.strategy == .geographic)
        #expect(decision.estimatedFee == 1_480)
        #expect(decision.candidates.map(\.channel).sorted() == ["paypal", "stripe"])
        #expect(Set(decision.excluded.map(\.channel)) == ["alipay", "wechat", "crypto"])
    }

    struct Case: Sendable, CustomTestStringConvertible {
        let amount: Int64, currency: Currency, country: String, method: PayMethod, mode: RoutingMode
        let channel: String?, strategy: DecidingReason?, fee: Int64?
        var testDescription: String { "\(amount) \(currency) \(country) \(method) \(mode) -> \(channel ?? "none")" }
    }

    @Test(arguments: [
        Case(amount: 50_000, currency: .USD, country: "US", method: .card, mode: .balanced, channel: "stripe", strategy: .geographic, fee: 1_480),
        // CNY wallet in China: alipay and wechat are local; alipay wins on success rate (98 vs 97).
        Case(amount: 10_000, currency: .CNY, country: "CN", method: .wallet, mode: .balanced, channel: "alipay", strategy: .success, fee: 60),
        // Cost mode, USD wallet in the US: alipay is cheapest (0.6%).
        Case(amount: 10_000, currency: .USD, country: "US", method: .wallet, mode: .cost, channel: "alipay", strategy: .cost, fee: 60),
        // Geographic mode for the same payment: stripe is the only local one.
        Case(amount: 10_000, currency: .USD, country: "US", method: .wallet, mode: .geographic, channel: "stripe", strategy: .geographic, fee: 320),
        // Success mode: alipay has the best rate.
        Case(amount: 10_000, currency: .USD, country: "US", method: .wallet, mode: .success, channel: "alipay", strategy: .success, fee: 60),
        // Crypto has one channel.
        Case(amount: 100_000_000, currency: .BTC, country: "DE", method: .crypto, mode: .balanced, channel: "crypto", strategy: .onlyCandidate, fee: 1_000_000),
        // Nobody takes JPY by QR.
        Case(amount: 1_000, currency: .JPY, country: "JP", method: .qr, mode: .balanced, channel: nil, strategy: nil, fee: nil),
        // EUR card in France: stripe is local.
        Case(amount: 2_000, currency: .EUR, country: "FR", method: .card, mode: .balanced, channel: "stripe", strategy: .geographic, fee: 88),
    ])
    func routingTable(c: Case) {
        let decision = router.decide(RoutingInput(amount: c.amount, currency: c.currency, country: c.country,
                                                  payMethod: c.method, mode: c.mode), seed: 7)
        #expect(decision.channel == c.channel)
        #expect(decision.strategy == c.strategy)
        #expect(decision.estimatedFee == c.fee)
    }

    @Test func forcedChannelIsHonouredOrNoChannel() {
        let forced = router.decide(RoutingInput(amount: 5_000, currency: .USD, country: "US", payMethod: .card, forcedChannel: "paypal"), seed: 1)
        #expect(forced.channel == "paypal")
        #expect(forced.strategy == .forced)
        let impossible = router.decide(RoutingInput(amount: 5_000, currency: .USD, country: "US", payMethod: .card, forcedChannel: "wechat"), seed: 1)
        #expect(impossible.channel == nil)
        #expect(impossible.excluded.contains(RoutingExclusion(channel: "wechat", reason: "currency_unsupported")))
    }

    @Test func disabledAndCircuitBrokenChannelsAreExcluded() {
        var config = RoutingConfig.defaults
        config.channels[2].enabled = false // stripe
        let decision = ChannelRouter(config: config).decide(RoutingInput(amount: 50_000, currency: .USD, country: "US", payMethod: .card), seed: 1)
        #expect(decision.channel == "paypal")
        #expect(decision.excluded.contains(RoutingExclusion(channel: "stripe", reason: "disabled")))
        let broken = router.decide(RoutingInput(amount: 50_000, currency: .USD, country: "US", payMethod: .card),
                                   openCircuits: ["stripe"], seed: 1)
        #expect(broken.channel == "paypal")
        #expect(broken.excluded.contains(RoutingExclusion(channel: "stripe", reason: "circuit_open")))
    }

    @Test func tiesAreBrokenByWeightAndReplayWithTheSameSeed() {
        // Two identical channels with weights 300:100 -> about 3:1.
        let twin = ChannelConfig(name: "a", feeBasisPoints: 100, successRate: 0.9, currencies: [.USD], payMethods: [.card],
                                 localCountries: [], weight: 300)
        var other = twin
        other.name = "b"
        other.weight = 100
        // Load-balance scores differ (1 vs 1/3), so equalise them with the weights 300:300 for a true tie.
        other.weight = 300
        let router = ChannelRouter(config: RoutingConfig(defaultMode: .balanced, channels: [twin, other]))
        let input = RoutingInput(amount: 1_000, currency: .USD, country: "US", payMethod: .card)
        var counts: [String: Int] = [:]
        for seed in 0..<2_000 as Range<UInt64> {
            let decision = router.decide(input, seed: seed)
            counts[decision.channel!, default: 0] += 1
            #expect(decision.strategy == .loadBalance)
        }
        #expect(counts["a"]! > 800 && counts["b"]! > 800)
        #expect(router.decide(input, seed: 42).channel == router.decide(input, seed: 42).channel)
    }

    @Test func liveSuccessRateBlendsWithThePriorAndOpensTheCircuit() {
        #expect(ChannelRouter.blendedSuccessRate(prior: 0.9, stats: nil) == 0.9)
        #expect(abs(ChannelRouter.blendedSuccessRate(prior: 0.9, stats: ChannelStats(attempts: 20, successes: 10)) - 0.7) < 1e-9)
        #expect(ChannelRouter.shouldOpenCircuit(ChannelStats(attempts: 20, successes: 9)))
        #expect(!ChannelRouter.shouldOpenCircuit(ChannelStats(attempts: 19, successes: 0)))
        #expect(!ChannelRouter.shouldOpenCircuit(ChannelStats(attempts: 40, successes: 20)))
    }

    @Test(arguments: RoutingMode.allCases)
    func everyDecisionSupportsTheCurrencyAndMethod(mode: RoutingMode) {
        for currency in Currency.allCases {
            for method in PayMethod.allCases {
                let decision = router.decide(RoutingInput(amount: 12_345, currency: currency, country: "SG", payMethod: method, mode: mode), seed: 3)
                guard let name = decision.channel else { continue }
                let channel = RoutingConfig.defaults.channels.first { $0.name == name }!
                #expect(channel.currencies.contains(currency) && channel.payMethods.contains(method))
                #expect(decision.estimatedFee! <= 12_345)
            }
        }
    }
}
