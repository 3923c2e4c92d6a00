/// Integer money arithmetic: basis points rounded half-up, with overflow reported, never trapped.
public enum MoneyMath {
    /// `amount * bps / 10_000`, rounded half-up (away from zero for halves), computed exactly in 128 bits.
    /// Returns nil when the result does not fit in `Int64`.
    public static func basisPoints(_ amount: Int64, _ bps: Int64) -> Int64? {
        let product = Int128(amount) * Int128(bps)
        let half = Int128(5_000)
        let rounded = product >= 0 ? (product + half) / 10_000 : (product - half) / 10_000
        return Int64(exactly: rounded)
    }

    /// `a + b`, or nil on overflow.
    public static func add(_ a: Int64, _ b: Int64) -> Int64? {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? nil : sum
    }

    /// `numerator / denominator` rounded half-up, for non-negative operands; nil when it does not fit.
    static func divideRoundingHalfUp(_ numerator: Int128, _ denominator: Int128) -> Int64? {
        precondition(denominator > 0)
        return Int64(exactly: (numerator + denominator / 2) / denominator)
    }
}
