@testable import Contract
import Foundation
import Payments
import Testing

/// `CanonicalJSON.encode` writes with its own encoder; its text must be `JSONEncoder`'s
/// (`[.sortedKeys, .withoutEscapingSlashes]`) byte for byte: stored request hashes, event ids and
/// replayed bodies were all written by `JSONEncoder`.
@Suite struct CanonicalJSONTests {
    static func expectSame<T: Encodable>(_ value: T, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let reference = try CanonicalJSON.encodeWithJSONEncoder(value)
        #expect(try CanonicalJSON.encode(value) == reference, sourceLocation: sourceLocation)
    }

    /// A deterministic generator (SplitMix64), so a failure is the same on every run.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
        mutating func pick<T>(_ values: [T]) -> T { values[below(values.count)] }
    }

    /// Every byte JSON escapes, slashes, quotes, multi-byte and combining characters, line
    /// separators, what breaks SQL, CSV and HTML.
    static let pieces: [String] = (0..<0x20).map { String(UnicodeScalar(UInt8($0))) } + [
        "\"", "\\", "/", "</script>", "'; DROP TABLE payments; --", "=HYPERLINK(\"x\")", ",", "a", "Z", "_", "0", " ",
        "é", "e\u{301}", "中文", "🙂", "👩‍👩‍👧", "\u{2028}", "\u{7F}", "\u{FEFF}", "\u{10FFFF}", "key", "Key", "k1", "k10", "k2",
    ]

    static func string(_ random: inout Random) -> String {
        (0..<random.below(6)).map { _ in random.pick(pieces) }.joined()
    }

    static let doubles: [Double] = [
        0, -0.0, 1, -1, 0.1, 0.5, 1.5, 2.5e-5, 1e-7, 1e-6, 1e15, 1e16, 1e17, 1e21, 1e22, 123456789.125, 3.141592653589793,
        .ulpOfOne, .leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
        9007199254740992, 9007199254740993, 0.30000000000000004, 100, 1e100, -2.2250738585072014e-308,
    ]

    static func double(_ random: inout Random) -> Double {
        if random.below(2) == 0 { return random.pick(doubles) }
        while true {
            let value = Double(bitPattern: random.next())
            if value.isFinite { return value }
        }
    }

    static func value(_ random: inout Random, depth: Int = 0) -> JSONValue {
        switch random.below(depth > 3 ? 6 : 8) {
        case 0: return .null
        case 1: return .bool(random.below(2) == 0)
        case 2: return .integer(random.pick([0, 1, -1, .max, .min, Int64(bitPattern: random.next())]))
        case 3: return random.below(2) == 0 ? .unsignedInteger(random.next()) : .number(double(&random))
        case 4, 5: return .string(string(&random))
        case 6: return .array((0..<random.below(5)).map { _ in value(&random, depth: depth + 1) })
        default:
            var members: [String: JSONValue] = [:]
            for _ in 0..<random.below(7) { members[string(&random)] = value(&random, depth: depth + 1) }
            return .object(members)
        }
    }

    @Test func randomDocumentsWithHostileStringsAndEveryKindOfNumber() throws {
        var random = Random(state: 20261207)
        for _ in 0..<3_000 {
            try Self.expectSame(Self.value(&random))
        }
    }

    @Test(arguments: doubles + [Double.pi, 1 / 3.0, 5e-324, 1.7976931348623157e308])
    func doublesAndFloats(_ number: Double) throws {
        try Self.expectSame(number)
        try Self.expectSame([number, -number])
        try Self.expectSame(["n": Float(number)].filter { $0.value.isFinite })
    }

    /// The authorize worker's own values, through the fast path (no hand-over to JSONEncoder),
    /// and identical to JSONEncoder's text.
    /// A payment request with hostile text in its order number, subject and metadata (none a third of the time).
    static func request(_ random: inout Random, customer: Customer?) -> PaymentRequest {
        PaymentRequest(orderNo: string(&random), amount: Int64(random.below(1_000_000_000)) + 1, currency: random.pick(Currency.allCases),
                       country: random.pick(Array(Country.codes)), payMethod: random.pick(PayMethod.allCases),
                       subject: random.below(2) == 0 ? nil : string(&random), customer: customer,
                       metadata: random.below(3) == 0 ? nil : Dictionary((0..<3).map { _ in (string(&random), string(&random)) },
                                                                        uniquingKeysWith: { first, _ in first }))
    }

    @Test func paymentsWithTheirRoutingDecisionsAndTheirEvents() throws {
        var random = Random(state: 7)
        let router = ChannelRouter(config: .defaults)
        for _ in 0..<300 {
            let request = Self.request(&random, customer: Customer(id: Self.string(&random), email: nil, ip: "10.0.0.1"))
            let decision = router.decide(RoutingInput(amount: request.amount, currency: request.currency, country: request.country,
                                                      payMethod: request.payMethod, mode: random.pick(RoutingMode.allCases)),
                                         stats: ["stripe": ChannelStats(attempts: random.below(100), successes: random.below(50))],
                                         seed: random.next())
            let payment = Payment(paymentNo: "pay_\(random.next())", merchantId: "mch_1", request: request,
                                  status: random.pick([.succeeded, .failed, .pending]), channel: decision.channel,
                                  routing: decision, channelFee: decision.estimatedFee ?? 0,
                                  failureCode: random.below(3) == 0 ? "channel_declined" : nil, failureMessage: Self.string(&random),
                                  version: 1, at: Date(timeIntervalSince1970: Double(random.below(2_000_000_000))))
            let event = CloudEvent(id: "evt", type: "payment.succeeded", source: "payfleet/authorize", time: "2026-12-07T00:00:00.000Z",
                                   merchantId: "mch_1", idempotencyKey: Self.string(&random), traceparent: nil, data: payment)
            // The encoder itself, not its hand-over to JSONEncoder (which would throw `Unsupported` here).
            #expect(try CanonicalEncoder.encode(decision) == CanonicalJSON.encodeWithJSONEncoder(decision))
            #expect(try CanonicalEncoder.encode(payment) == CanonicalJSON.encodeWithJSONEncoder(payment))
            #expect(try CanonicalEncoder.encode(event) == CanonicalJSON.encodeWithJSONEncoder(event))
            // And what these types write themselves (`CanonicalJSONWritable`), which `encode` takes.
            #expect(try CanonicalJSONWriter.text(of: decision) == CanonicalJSON.encodeWithJSONEncoder(decision))
            #expect(try CanonicalJSONWriter.text(of: payment) == CanonicalJSON.encodeWithJSONEncoder(payment))
            #expect(try CanonicalJSONWriter.text(of: event) == CanonicalJSON.encodeWithJSONEncoder(event))
            #expect(try CanonicalJSON.encode(event) == CanonicalJSON.encodeWithJSONEncoder(event))
        }
    }

    /// Every optional of the self-writing types, both ways; an order and its event; hostile text in
    /// every string; an event with and without each optional attribute.
    @Test func whatWritesItselfIsJSONEncodersTextInEveryShape() throws {
        var random = Random(state: 11)
        let router = ChannelRouter(config: .defaults)
        for index in 0..<400 {
            let request = Self.request(&random, customer: nil)
            var decision = router.decide(RoutingInput(amount: request.amount, currency: request.currency, country: request.country,
                                                      payMethod: request.payMethod, mode: random.pick(RoutingMode.allCases)),
                                         seed: random.next())
            if random.below(4) == 0 { decision.channel = nil; decision.strategy = nil; decision.estimatedFee = nil }
            var payment = Payment(paymentNo: "pay_\(random.next())", merchantId: Self.string(&random), request: request,
                                  status: random.pick(PaymentStatus.allCases), channel: random.below(4) == 0 ? nil : decision.channel,
                                  routing: random.below(4) == 0 ? nil : decision, channelFee: Int64(random.below(10_000)),
                                  failureCode: random.below(2) == 0 ? nil : Self.string(&random),
                                  failureMessage: random.below(2) == 0 ? nil : Self.string(&random),
                                  version: random.below(9) + 1, at: Date(timeIntervalSince1970: Double(random.below(2_000_000_000))))
            payment.preAuthNo = random.below(3) == 0 ? "pa_\(index)" : nil
            payment.refundedAmount = Int64(random.below(1_000))
            var order = Order(orderNo: Self.string(&random), merchantId: "mch_\(index)", amount: request.amount, currency: request.currency,
                              status: random.pick(OrderStatus.allCases), payments: (0..<random.below(4)).map { _ in Self.string(&random) },
                              version: random.below(5), createdAt: "2026-12-07T00:00:00.000Z", updatedAt: Self.string(&random))
            order.paidAmount = Int64(random.below(100))
            func optional() -> String? { random.below(2) == 0 ? nil : Self.string(&random) }
            let paymentEvent = CloudEvent(id: Self.string(&random), type: "payment.succeeded", source: Self.string(&random), time: optional(),
                                          merchantId: optional(), idempotencyKey: optional(), traceparent: optional(), data: payment)
            let orderEvent = CloudEvent(id: "evt", type: Order.eventType, source: "/payfleet/authorize", time: optional(), merchantId: optional(),
                                        data: order)
            try Self.expectWrittenAsJSONEncoderWrites(decision)
            try Self.expectWrittenAsJSONEncoderWrites(payment)
            try Self.expectWrittenAsJSONEncoderWrites(order)
            try Self.expectWrittenAsJSONEncoderWrites(paymentEvent)
            try Self.expectWrittenAsJSONEncoderWrites(orderEvent)
        }
    }

    static func expectWrittenAsJSONEncoderWrites<T: CanonicalJSONWritable>(_ value: T, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let reference = try CanonicalJSON.encodeWithJSONEncoder(value)
        #expect(try CanonicalJSONWriter.text(of: value) == reference, sourceLocation: sourceLocation)
        #expect(try CanonicalJSON.encode(value) == reference, sourceLocation: sourceLocation)
    }

    /// A number the writer cannot write hands the whole value to `JSONEncoder`, as the encoder does.
    @Test func aNonFiniteScoreGoesToJSONEncoderLikeAnyOther() throws {
        var decision = ChannelRouter(config: .defaults).decide(RoutingInput(amount: 100, currency: .USD, country: "US", payMethod: .card),
                                                               seed: 1)
        decision.candidates[0].total = .nan
        #expect(throws: CanonicalEncoder.Unsupported.self) { try CanonicalJSONWriter.text(of: decision) }
        #expect(throws: EncodingError.self) { try CanonicalJSON.encode(decision) }
    }

    struct Everything: Encodable {
        var i8: Int8 = .min, i16: Int16 = .min, i32: Int32 = .min, i64: Int64 = .min, int: Int = .max
        var u8: UInt8 = .max, u16: UInt16 = .max, u32: UInt32 = .max, u64: UInt64 = .max, uint: UInt = .max
        var float: Float = 0.1, double: Double = 0.1, yes = true, no = false
        var none: String? = nil
        var nested: [String: [Int]] = ["b": [], "a": [1, 2], "": [3]]
        var byNumber: [Int: String] = [10: "ten", 2: "two", -1: "minus one"]
        var optionalOptional: Int?? = .some(nil)
        var date = Date(timeIntervalSince1970: 1_765_000_000.25)
        var empty: [String] = []
        var emptyObject: [String: Int] = [:]
    }

    struct Base: Encodable { var base = "b" }
    final class Derived: Encodable {
        let own = 1
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(own, forKey: .own)
            try Base().encode(to: container.superEncoder())
            try container.encode("x", forKey: .zeta)
            var list = container.nestedUnkeyedContainer(forKey: .list)
            try list.encode(1)
            try "in list".encode(to: list.superEncoder())
            var inner = list.nestedContainer(keyedBy: CodingKeys.self)
            try inner.encodeNil(forKey: .own)
        }
        enum CodingKeys: String, CodingKey { case own, zeta, list }
    }

    struct Nothing: Encodable { func encode(to encoder: any Encoder) throws {} }
    struct EmptyKeyed: Encodable {
        func encode(to encoder: any Encoder) throws { _ = encoder.container(keyedBy: Derived.CodingKeys.self) }
    }
    struct TwiceTheSameKey: Encodable {
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Derived.CodingKeys.self)
            try container.encode(1, forKey: .own)
            try container.encode(2, forKey: .own)
        }
    }
    struct TwoKeyedContainers: Encodable {
        func encode(to encoder: any Encoder) throws {
            var first = encoder.container(keyedBy: Derived.CodingKeys.self)
            try first.encode(1, forKey: .own)
            var second = encoder.container(keyedBy: Derived.CodingKeys.self)
            try second.encode(2, forKey: .zeta)
        }
    }
    struct Special: Encodable {
        var data = Data([0, 1, 2, 250])
        var url = URL(string: "https://example.com/a b?q=1")
        var decimal = Decimal(string: "12.345")!
    }

    @Test func everyPrimitiveContainerAndSpecialCase() throws {
        try Self.expectSame(Everything())
        try Self.expectSame(Derived())
        #expect(throws: EncodingError.self) { try CanonicalJSON.encode(Nothing()) }  // as JSONEncoder: nothing at the top
        try Self.expectSame(EmptyKeyed())
        try Self.expectSame([Nothing()])
        try Self.expectSame(TwiceTheSameKey())
        try Self.expectSame(TwoKeyedContainers())
        try Self.expectSame(Special())
        try Self.expectSame("top-level \"fragment\"")
        try Self.expectSame(Optional<Int>.none)
        try Self.expectSame(42)
        try Self.expectSame(["é": 1, "e": 2, "E": 3, "ea": 4, "🙂": 5, "\u{7F}": 6])
    }

    @Test func nonFiniteNumbersAreRefusedAsJSONEncoderRefusesThem() {
        for value in [Double.nan, .infinity, -.infinity] {
            #expect(throws: EncodingError.self) { try CanonicalJSON.encode(["amount": value]) }
            #expect(throws: EncodingError.self) { try CanonicalJSON.encode([Float(value)]) }
        }
    }
}
