import Contract
import Foundation
import Payments
import Testing

/// Settlement fees, payout dates, the export's CSV cells and decimals, orders: pure tables.
@Suite struct MoneyOutTests {
    // MARK: fees: gross x the tier's rate, half-up in integer basis points

    @Test(arguments: [
        // (payments, refunds, bps, gross, fee, net)
        (Int64(100_000), Int64(0), Int64(80), Int64(100_000), Int64(800), Int64(99_200)),     // starter 0.80%
        (Int64(100_000), Int64(40_000), Int64(60), Int64(60_000), Int64(360), Int64(59_640)), // refunds of the day come off gross
        (Int64(125), Int64(0), Int64(80), Int64(125), Int64(1), Int64(124)),                  // 1.00 -> 1
        (Int64(1_250), Int64(0), Int64(60), Int64(1_250), Int64(8), Int64(1_242)),            // 7.5 -> 8: half-up at .5
        (Int64(1_249), Int64(0), Int64(60), Int64(1_249), Int64(7), Int64(1_242)),            // 7.494 -> 7
        (Int64(1_000), Int64(0), Int64(45), Int64(1_000), Int64(5), Int64(995)),              // 4.5 -> 5 (not banker's 4)
        (Int64(10_000), Int64(0), Int64(30), Int64(10_000), Int64(30), Int64(9_970)),         // premium 0.30%
        (Int64(0), Int64(1_250), Int64(60), Int64(-1_250), Int64(-8), Int64(-1_242)),         // refunds only: symmetric
    ])
    func settlementFigures(payments: Int64, refunds: Int64, bps: Int64, gross: Int64, fee: Int64, net: Int64) throws {
        let figures = try #require(SettlementFigures(payments: payments, refunds: refunds, feeBasisPoints: bps))
        #expect(figures.gross == gross)
        #expect(figures.fee == fee)
        #expect(figures.net == net)
        #expect(figures.gross == figures.fee + figures.net)
    }

    @Test func settlementFiguresRefuseOverflow() {
        #expect(SettlementFigures(payments: .max, refunds: -1, feeBasisPoints: 80) == nil)
    }

    @Test(arguments: [(Tier.starter, Int64(80)), (.business, 60), (.enterprise, 45), (.premium, 30)])
    func tierRates(tier: Tier, bps: Int64) {
        #expect(tier.policy.feeBasisPoints == bps)
    }

    // MARK: payout dates

    static let christmas = BusinessCalendar(weekend: [6, 7], holidays: [UTCDay("2026-12-25")!, UTCDay("2026-12-28")!])

    @Test(arguments: [
        // (day, cycle, payout) with weekends and the holidays 2026-12-25 (Fri) and 2026-12-28 (Mon)
        ("2026-12-04", SettlementCycle.tPlus1, "2026-12-07"), // a Friday with T+1 is Monday
        ("2026-12-02", .tPlus1, "2026-12-03"),                // Wednesday -> Thursday
        ("2026-12-05", .tPlus1, "2026-12-07"),                // Saturday -> Monday
        ("2026-12-24", .tPlus1, "2026-12-29"),                // Thursday: Fri holiday, weekend, Mon holiday
        ("2026-12-02", .tPlus0, "2026-12-02"),                // T+0 on a business day: that day
        ("2026-12-06", .tPlus0, "2026-12-07"),                // T+0 on a Sunday: Monday
        ("2026-12-25", .tPlus0, "2026-12-29"),                // T+0 on a holiday: the next business day
        ("2026-12-06", .dPlus0, "2026-12-06"),                // D+0 on a Sunday is the Sunday
        ("2026-12-25", .dPlus0, "2026-12-25"),                // D+0 ignores holidays
    ])
    func payoutDates(day: String, cycle: SettlementCycle, payout: String) throws {
        let day = try #require(UTCDay(day))
        #expect(Self.christmas.payoutDate(for: day, cycle: cycle).description == payout)
    }

    @Test(arguments: [("2026-12-07", 1), ("2026-12-04", 5), ("2026-12-05", 6), ("2026-12-06", 7), ("1970-01-01", 4)])
    func weekdays(day: String, weekday: Int) throws {
        #expect(try #require(UTCDay(day)).weekday == weekday)
    }

    @Test(arguments: ["2026-02-30", "2026-13-01", "26-12-01", "2026-12-1", "2026/12/01", "2026-12-01T00:00:00Z", "", "1969-12-31", "２０２６-12-01"])
    func malformedDays(text: String) {
        #expect(UTCDay(text) == nil)
    }

    @Test func calendarDocumentRoundTripsAndRejectsNonsense() throws {
        let parsed = try BusinessCalendar.parse(Self.christmas.json).get()
        #expect(parsed == Self.christmas)
        let allWeekend = JSONValue.object(["weekend": .array(BusinessCalendar.weekdayNames.map { .string($0) })])
        #expect(throws: ValidationFailure.self) { try BusinessCalendar.parse(allWeekend).get() }
        #expect(throws: ValidationFailure.self) { try BusinessCalendar.parse(.object(["holidays": .array([.string("2026-12-32")])])).get() }
    }

    // MARK: CSV cells

    @Test(arguments: [
        // (text, free text?, cell)
        ("=1+2", true, "'=1+2"),
        ("+1", true, "'+1"),
        ("-1", true, "'-1"),
        ("@SUM(A1)", true, "'@SUM(A1)"),
        ("\tx", true, "'\tx"),
        ("\rx", true, "\"'\rx\""),                   // guarded and quoted (it holds a CR)
        ("=HYPERLINK(\"http://x\")", true, "\"'=HYPERLINK(\"\"http://x\"\")\""),
        ("-1", false, "-1"),                         // not free text: never guarded
        ("order, 42", true, "\"order, 42\""),
        ("say \"hi\"", true, "\"say \"\"hi\"\"\""),
        ("line\r\nbreak", true, "\"line\r\nbreak\""),
        ("line\nbreak", true, "\"line\nbreak\""),
        ("订单-42 café", true, "订单-42 café"),          // non-ASCII passes through as UTF-8
        ("a-=b", true, "a-=b"),                        // only a leading formula character counts
        ("", true, ""),
    ])
    func csvCells(text: String, freeText: Bool, cell: String) {
        #expect(ExportCSV.cell(text, freeText: freeText) == cell)
    }

    @Test(arguments: [
        (Currency.JPY, Int64(1_234), "1234"),
        (.USD, 123_456, "1234.56"),
        (.USD, 5, "0.05"),
        (.CNY, 100, "1.00"),
        (.EUR, 0, "0.00"),
        (.GBP, 1, "0.01"),
        (.SGD, 99, "0.99"),
        (.BTC, 123_456_789, "1.23456789"),
        (.BTC, 1, "0.00000001"),
        (.USDT, 1_500_000, "1.500000"),
        (.ETH, 1_000_000_001, "1.000000001"),
    ])
    func decimals(currency: Currency, minorUnits: Int64, text: String) {
        #expect(currency.format(minorUnits) == text)
        #expect(ExportCSV.decimal(minorUnits, currency: currency) == text, "the export's own writer")
    }

    @Test func aRowHasEveryColumnCRLFAndAmountsAsDecimals() {
        var bytes = ExportCSV.head()
        #expect(Array(bytes.prefix(3)) == [0xEF, 0xBB, 0xBF])
        ExportCSV.append(ExportRow(paymentNo: "pay_x", orderNo: "-cmd", createdAt: "2026-12-01T00:00:00.000Z",
                                   updatedAt: "2026-12-01T00:00:01.000Z", status: "partially_refunded", currency: .JPY, amount: 5_000,
                                   refundedAmount: 1_000, channelFee: 150, channel: "stripe", payMethod: "card", country: "JP",
                                   preAuthNo: nil, subject: "=cmd|' /C calc'!A0", failureCode: nil, failureMessage: nil,
                                   metadata: #"{"k": "v,w"}"#), to: &bytes)
        let text = String(decoding: bytes.dropFirst(3), as: UTF8.self)
        let lines = text.components(separatedBy: "\r\n")
        #expect(lines.count == 3 && lines[2].isEmpty)
        #expect(lines[0].split(separator: ",").count == ExportCSV.columns.count)
        #expect(lines[1] == #"pay_x,'-cmd,2026-12-01T00:00:00.000Z,2026-12-01T00:00:01.000Z,partially_refunded,JPY,5000,1000,150,stripe,card,JP,,'=cmd|' /C calc'!A0,,,"{""k"": ""v,w""}""#)
    }

    // MARK: orders

    @Test func orderStatusFollowsItsMoney() {
        var order = Order(orderNo: "o-1", merchantId: "mch_a", amount: 1_000, currency: .USD, createdAt: "t", updatedAt: "t")
        order.attempt("pay_1", amount: 1_000, currency: .USD)
        #expect(order.status == .created && order.status.refusal == nil)
        order.attempt("pay_2", amount: 900, currency: .USD)      // a retry at another price
        #expect(order.amount == 900 && order.payments == ["pay_1", "pay_2"])
        order.paid(900)
        #expect(order.status == .paid && order.status.refusal == .orderAlreadyPaid)
        order.attempt("pay_3", amount: 5, currency: .EUR)        // a capture of a paid order keeps its price
        #expect(order.amount == 900 && order.currency == .USD)
        order.refunded(300)
        #expect(order.status == .partiallyRefunded)
        order.refunded(600)
        #expect(order.status == .refunded && order.status.refusal == .orderAlreadyPaid)
    }

    @Test func aTimedOutOrderIsCancelledUnlessPaid() {
        var order = Order(orderNo: "o-2", merchantId: "mch_a", amount: 1_000, currency: .USD, createdAt: "t", updatedAt: "t")
        order.cancel()
        #expect(order.status == .cancelled && order.status.refusal == .orderCancelled)
        var paid = Order(orderNo: "o-3", merchantId: "mch_a", amount: 1_000, currency: .USD, createdAt: "t", updatedAt: "t")
        paid.paid(1_000)
        paid.cancel()
        #expect(paid.status == .paid)
    }

    @Test func anUnchangedOrderIsNoChange() {
        let order = Order(orderNo: "o-4", merchantId: "mch_a", amount: 1_000, currency: .USD, payments: ["pay_1"], createdAt: "t", updatedAt: "t")
        var again = order
        again.attempt("pay_1", amount: 1_000, currency: .USD)
        #expect(again.changed(from: order, at: Date()) == nil)
        again.paid(1_000)
        #expect(again.changed(from: order, at: Date())?.version == 2)
    }

    // MARK: export requests

    @Test(arguments: [
        (#"{"start_date": "2026-01-01", "end_date": "2026-12-31"}"#, nil),
        (#"{"start_date": "2024-01-01", "end_date": "2024-12-31"}"#, nil),                 // 366 days (leap year)
        (#"{"start_date": "2025-01-01", "end_date": "2026-01-01"}"#, nil),                 // 366 days: 2025 and one more
        (#"{"start_date": "2025-01-01", "end_date": "2026-01-02"}"#, "end_date"),          // 367 days
        (#"{"start_date": "2026-01-01", "end_date": "2027-01-02"}"#, "end_date"),          // 367 days
        (#"{"start_date": "2026-12-02", "end_date": "2026-12-01"}"#, "end_date"),          // end before start
        (#"{"start_date": "2026-12-01", "end_date": "2026-12-01", "format": "xlsx"}"#, "format"),
        (#"{"start_date": "12/01/2026", "end_date": "2026-12-01"}"#, "start_date"),
        (#"{"start_date": 20261201, "end_date": "2026-12-01"}"#, "start_date"),
        (#"{"end_date": "2026-12-01"}"#, "start_date"),
    ])
    func exportRequests(body: String, badField: String?) throws {
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(body.utf8))
        switch ExportRequest.parse(json) {
        case .success: #expect(badField == nil)
        case .failure(let failure): #expect(failure.errors.map(\.field).contains(badField ?? "-"), "\(failure.errors)")
        }
    }
}
