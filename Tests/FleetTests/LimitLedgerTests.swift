import Foundation
import PayFleetTesting
import Payments
import Store
import Testing

/// The limit script against real Redis.
@Suite struct LimitLedgerTests {
    let windows = LimitWindows(at: Date())

    @Test func fiftyConcurrentReservationsNeverExceedTheLimit() async throws {
        let redis = try TestEnvironment.redis(poolSize: 8)
        let ledger = LimitLedger(redis: redis)
        let merchant = TestEnvironment.unique("mch")
        let limits = EffectiveLimits(tier: .starter, overrides: LimitOverrides(singleLimit: 1_000, dailyLimit: 1_000, monthlyLimit: 5_000))
        let results = try await withThrowingTaskGroup(of: LimitLedger.Reservation.self) { group in
            for index in 0..<50 {
                group.addTask {
                    try await ledger.reserve(merchantId: merchant, reservationKey: "cmd-\(index)", amount: 30, limits: limits, windows: windows)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.filter { $0 == .reserved }.count == 33)
        #expect(results.filter { $0 == .exceeded(.daily) }.count == 17)
        let usage = try await ledger.usage(merchantId: merchant, windows: windows)
        #expect(usage.day == 990 && usage.month == 990)
        await redis.close()
    }

    @Test func aRedeliveredCommandNeverReservesTwice() async throws {
        let redis = try TestEnvironment.redis()
        let ledger = LimitLedger(redis: redis)
        let merchant = TestEnvironment.unique("mch")
        let limits = EffectiveLimits(tier: .premium)
        #expect(try await ledger.reserve(merchantId: merchant, reservationKey: "k", amount: 500, limits: limits, windows: windows) == .reserved)
        #expect(try await ledger.reserve(merchantId: merchant, reservationKey: "k", amount: 500, limits: limits, windows: windows) == .alreadyReserved)
        #expect(try await ledger.usage(merchantId: merchant, windows: windows).day == 500)
        #expect(try await ledger.release(merchantId: merchant, reservationKey: "k"))
        #expect(try await !ledger.release(merchantId: merchant, reservationKey: "k"), "a second release gives nothing back")
        #expect(try await ledger.usage(merchantId: merchant, windows: windows).day == 0)
        await redis.close()
    }

    @Test(arguments: [(Int64(10_001), LimitLedger.LimitKind.single), (Int64(10_000), nil)])
    func singleLimit(amount: Int64, exceeded: LimitLedger.LimitKind?) async throws {
        let redis = try TestEnvironment.redis()
        let result = try await LimitLedger(redis: redis).reserve(merchantId: TestEnvironment.unique("mch"), reservationKey: "k",
                                                                  amount: amount, limits: EffectiveLimits(tier: .starter), windows: windows)
        #expect(result == (exceeded.map { .exceeded($0) } ?? .reserved))
        await redis.close()
    }

    @Test func monthlyLimitHoldsAcrossDays() async throws {
        let redis = try TestEnvironment.redis()
        let ledger = LimitLedger(redis: redis)
        let merchant = TestEnvironment.unique("mch")
        let limits = EffectiveLimits(tier: .starter, overrides: LimitOverrides(dailyLimit: 1_000, monthlyLimit: 1_500))
        let day1 = LimitWindows(at: Date(timeIntervalSince1970: 1_796_083_170 - 86_400 * 3))
        let day2 = LimitWindows(at: Date(timeIntervalSince1970: 1_796_083_170 - 86_400 * 2))
        #expect(try await ledger.reserve(merchantId: merchant, reservationKey: "a", amount: 1_000, limits: limits, windows: day1) == .reserved)
        #expect(try await ledger.reserve(merchantId: merchant, reservationKey: "b", amount: 600, limits: limits, windows: day2) == .exceeded(.monthly))
        #expect(try await ledger.reserve(merchantId: merchant, reservationKey: "c", amount: 500, limits: limits, windows: day2) == .reserved)
        await redis.close()
    }
}
