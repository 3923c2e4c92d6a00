import Contract
import Foundation
import Testing
import Workers

/// The clock's pure rules: slots, catch-up after downtime, the keys of scheduled commands.
@Suite struct ScheduleTests {
    static func at(_ text: String) -> Date { Timestamp.parse(text)! }
    static let tasks = Dictionary(uniqueKeysWithValues: ScheduledTask.standard().map { ($0.name, $0) })

    @Test func slotsAreAlignedToTheirInterval() {
        let sweep = Self.tasks["payment.timeout"]!
        #expect(sweep.slot(at: Self.at("2026-12-02T00:07:59Z")) == Self.at("2026-12-02T00:05:00Z"))
        #expect(sweep.slot(at: Self.at("2026-12-02T00:10:00Z")) == Self.at("2026-12-02T00:10:00Z"))
        #expect(Self.tasks["preauth.expire"]!.slot(at: Self.at("2026-12-02T00:59:00Z")) == Self.at("2026-12-02T00:30:00Z"))
        #expect(Self.tasks["settlement.run"]!.slot(at: Self.at("2026-12-02T23:00:00Z")) == Self.at("2026-12-02T00:00:00Z"))
        // Archive runs weekly on Mondays 00:00 UTC: 2026-12-02 is a Wednesday.
        #expect(Self.tasks["archive.run"]!.slot(at: Self.at("2026-12-02T12:00:00Z")) == Self.at("2026-11-30T00:00:00Z"))
        #expect(Self.tasks["export.cleanup"]!.slot(at: Self.at("2026-12-02T12:34:56Z")) == Self.at("2026-12-02T12:00:00Z"))
        #expect(Self.tasks["retention.prune"]!.slot(at: Self.at("2026-12-02T12:34:56Z")) == Self.at("2026-12-02T12:30:00Z"))
        #expect(Self.tasks["retention.prune"]!.slot(at: Self.at("2026-12-02T12:29:59Z")) == Self.at("2026-12-02T11:30:00Z"))
    }

    @Test func aFirstRunRunsTheCurrentSlotOnly() {
        let plan = Self.tasks["payment.timeout"]!.plan(last: nil, now: Self.at("2026-12-02T00:07:00Z"))
        #expect(plan.run == [Self.at("2026-12-02T00:05:00Z")] && plan.skip.isEmpty)
        let again = Self.tasks["payment.timeout"]!.plan(last: Self.at("2026-12-02T00:05:00Z"), now: Self.at("2026-12-02T00:09:59Z"))
        #expect(again.run.isEmpty && again.skip.isEmpty, "nothing new until the next slot")
    }

    /// Catch-up after downtime is bounded, and visible: the sweeps run only the latest slot, and
    /// every older missed slot gets a skipped row.
    @Test func aSweepCatchesUpOnlyTheLatestSlotAndSkipsTheRest() {
        let plan = Self.tasks["payment.timeout"]!.plan(last: Self.at("2026-12-02T00:00:00Z"), now: Self.at("2026-12-02T01:02:00Z"))
        #expect(plan.run == [Self.at("2026-12-02T01:00:00Z")])
        #expect(plan.skip.count == 11)
        #expect(plan.skip.first == Self.at("2026-12-02T00:05:00Z") && plan.skip.last == Self.at("2026-12-02T00:55:00Z"))
    }

    @Test func settlementCatchesUpSevenDaysBack() {
        let plan = Self.tasks["settlement.run"]!.plan(last: Self.at("2026-11-20T00:00:00Z"), now: Self.at("2026-12-02T08:00:00Z"))
        #expect(plan.run.count == 7 && plan.run.first == Self.at("2026-11-26T00:00:00Z") && plan.run.last == Self.at("2026-12-02T00:00:00Z"))
        #expect(plan.skip.count == 5 && plan.skip.first == Self.at("2026-11-21T00:00:00Z"))
        // It settles the day before its slot.
        #expect(Self.tasks["settlement.run"]!.data(Self.at("2026-12-02T00:00:00Z")) == .object(["date": .string("2026-12-01")]))
    }

    @Test func aSlotsCommandIsKeyedByTaskAndSlot() {
        #expect(Self.tasks["payment.timeout"]!.key(for: Self.at("2026-12-02T00:05:00Z")) == "payment.timeout@2026-12-02T00:05:00.000Z")
    }
}
