import Payments
import Testing

@Suite struct MoneyTests {
    @Test(arguments: [
        (Currency.JPY, 0), (.USD, 2), (.CNY, 2), (.EUR, 2), (.GBP, 2), (.SGD, 2), (.BTC, 8), (.USDT, 6), (.ETH, 9),
    ])
    func exponents(currency: Currency, exponent: Int) {
        #expect(currency.exponent == exponent)
    }

    @Test func formatsMinorUnitsByExponent() {
        #expect(Currency.USD.format(12_345) == "123.45")
        #expect(Currency.USD.format(5) == "0.05")
        #expect(Currency.JPY.format(500) == "500")
        #expect(Currency.BTC.format(1) == "0.00000001")
        #expect(Currency.ETH.format(-1_500_000_000) == "-1.500000000")
    }

    @Test(arguments: [
        (Int64(50_000), Int64(290), Int64(1_450)),
        (Int64(1), Int64(5_000), Int64(1)),     // 0.5 rounds half-up to 1
        (Int64(1), Int64(4_999), Int64(0)),
        (Int64(15), Int64(1_000), Int64(2)),    // 1.5 -> 2
        (Int64(25), Int64(1_000), Int64(3)),    // 2.5 -> 3 (half-up, not banker's)
        (Int64(-15), Int64(1_000), Int64(-2)),
    ])
    func basisPointsRoundHalfUp(amount: Int64, bps: Int64, expected: Int64) {
        #expect(MoneyMath.basisPoints(amount, bps) == expected)
    }

    @Test func basisPointsReportOverflowInsteadOfTrapping() {
        #expect(MoneyMath.basisPoints(Int64.max, 20_000) == nil)
        #expect(MoneyMath.basisPoints(Int64.max, 10_000) == Int64.max)
        #expect(MoneyMath.add(Int64.max, 1) == nil)
    }

    @Test func fxConvertsBetweenExponents() {
        let fx = FXTable.defaults
        #expect(fx.convert(10_000, from: .USD, to: .USD) == 10_000)
        // 100.00 USD at 0.14 USD/CNY = 714.29 CNY
        #expect(fx.convert(10_000, from: .USD, to: .CNY) == 71_429)
        // 1 BTC (10^8 sat) = 90,000 USD = 9,000,000 cents
        #expect(fx.convert(100_000_000, from: .BTC, to: .USD) == 9_000_000)
        // 1,000 JPY = 6.70 USD
        #expect(fx.convert(1_000, from: .JPY, to: .USD) == 670)
        // 9.2e16 USD is 3e22 gwei of ETH: more than Int64 holds, reported as nil.
        #expect(fx.convert(Int64.max, from: .USD, to: .ETH) == nil)
    }

    @Test(arguments: Tier.allCases)
    func tierFeesNeverExceedTheAmount(tier: Tier) {
        for amount: Int64 in [1, 99, 10_000, 1_000_000_007] {
            let fee = tier.policy.fee(for: amount)!
            #expect(fee >= 0 && fee <= amount)
        }
    }

    @Test func tierTableMatchesRules() {
        #expect(Tier.starter.policy.dailyLimit == 100_000)
        #expect(Tier.business.policy.monthlyLimit == 1_500_000)
        #expect(Tier.enterprise.policy.singleLimit == 200_000)
        #expect(Tier.premium.policy.feeBasisPoints == 30)
        #expect(!Tier.starter.policy.multiCurrency && Tier.business.policy.multiCurrency)
        #expect(!Tier.business.policy.preAuthorization && Tier.enterprise.policy.preAuthorization)
        #expect(EffectiveLimits(tier: .starter, currency: .USD, overrides: LimitOverrides(dailyLimit: 5)).daily == 5)
        #expect(EffectiveLimits(tier: .starter, currency: .USD, overrides: LimitOverrides(dailyLimit: 5)).single == 1_000_000)
    }

    /// RULES: the tier table is in MAJOR units of the base currency, scaled by its exponent. The
    /// seed's starter allows 10,000 CNY a payment ("单笔限额 1万"), which is 1,000,000 fen; JPY has no
    /// minor unit, so there the numbers stand as they are.
    @Test(arguments: [
        (Tier.starter, Currency.CNY, Int64(1_000_000), Int64(10_000_000), Int64(30_000_000)),
        (.business, .USD, 5_000_000, 50_000_000, 150_000_000),
        (.enterprise, .EUR, 20_000_000, 200_000_000, 600_000_000),
        (.premium, .JPY, 1_000_000, 10_000_000, 30_000_000),
    ])
    func tierLimitsAreMajorUnitsOfTheBaseCurrency(tier: Tier, currency: Currency, single: Int64, daily: Int64, monthly: Int64) {
        let limits = EffectiveLimits(tier: tier, currency: currency)
        #expect(limits.single == single && limits.daily == daily && limits.monthly == monthly)
    }

    /// As a new user tries it: a business merchant's 500.00 USD payment (the seed's routing example)
    /// is well within its single limit of 50,000.00 USD.
    @Test func aBusinessMerchantCanTakeTheSeedsRoutingExample() {
        let merchant = Merchant(merchantId: "mch_x", name: "Shop", tier: .business, baseCurrency: .USD, country: "US",
                                autoSettlement: true, createdAt: "2026-12-01T00:00:00.000Z")
        #expect(50_000 <= merchant.limits.single)
        #expect(merchant.limits.single == 5_000_000)
    }

    @Test(arguments: [Currency.BTC, .ETH, .USDT])
    func aCryptoBaseCurrencyIsRefused(currency: Currency) {
        let result = NewMerchant.parse(.object(["name": .string("Shop"), "country": .string("US"), "base_currency": .string(currency.rawValue)]))
        guard case .failure(let failure) = result else { Issue.record("accepted \(currency)"); return }
        #expect(failure.errors.map(\.field) == ["base_currency"])
    }

    @Test func limitWindowsAreUTCDaysAndMonths() {
        // 2026-11-30T23:59:30Z
        let windows = LimitWindows(at: Date(timeIntervalSince1970: 1_796_083_170))
        #expect(windows.day == "20261130")
        #expect(windows.month == "202611")
        #expect(windows.secondsToDayEnd == 30)
        #expect(windows.secondsToMonthEnd == 30)
    }
}

import Foundation
