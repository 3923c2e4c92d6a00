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
        #expect(EffectiveLimits(tier: .starter, overrides: LimitOverrides(dailyLimit: 5)).daily == 5)
        #expect(EffectiveLimits(tier: .starter, overrides: LimitOverrides(dailyLimit: 5)).single == 10_000)
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
