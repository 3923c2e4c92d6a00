import Contract
/// Exchange rates used to convert an amount into a merchant's base currency for limit checks.
///
/// Rates are USD per one major unit, fixed-point with 8 decimals, so conversion is exact integer
/// arithmetic (128-bit intermediates) rounded half-up. The defaults cover every currency of
/// `Currency`, crypto included; configuration may replace them.
public struct FXTable: Sendable, Equatable, Codable {
    /// USD value of one major unit, times 10^8.
    public var usdPerMajorScaled: [Currency: Int64]

    public static let scale: Int64 = 100_000_000

    public init(usdPerMajorScaled: [Currency: Int64]) { self.usdPerMajorScaled = usdPerMajorScaled }

    public static let defaults = FXTable(usdPerMajorScaled: [
        .USD: 100_000_000,
        .USDT: 100_000_000,
        .EUR: 108_000_000,
        .GBP: 127_000_000,
        .SGD: 74_000_000,
        .CNY: 14_000_000,
        .JPY: 670_000,
        .BTC: 9_000_000_000_000,
        .ETH: 300_000_000_000,
    ])

    enum CodingKeys: String, CodingKey { case usdPerMajorScaled = "usd_per_major_scaled" }

    /// `{}` is a table with no configured rates (the defaults apply).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        usdPerMajorScaled = try container.decodeIfPresent([Currency: Int64].self, forKey: .usdPerMajorScaled) ?? [:]
    }

    /// This table over the defaults: a configured rate wins, every other currency keeps its default.
    public func overDefaults() -> FXTable {
        FXTable(usdPerMajorScaled: Self.defaults.usdPerMajorScaled.merging(usdPerMajorScaled) { $1 })
    }

    /// Every problem of the document, by field.
    public var validationErrors: [FieldError] {
        usdPerMajorScaled.sorted(by: { $0.key.rawValue < $1.key.rawValue }).compactMap { currency, rate in
            rate > 0 ? nil : FieldError("usd_per_major_scaled.\(currency.rawValue)", "must be a positive rate (USD per major unit x 10^8)")
        }
    }

    /// `amount` minor units of `from` expressed in minor units of `to`, rounded half-up.
    /// Nil when a rate is missing or the result overflows `Int64`.
    public func convert(_ amount: Int64, from: Currency, to: Currency) -> Int64? {
        if from == to { return amount }
        guard amount >= 0, let rateFrom = usdPerMajorScaled[from], let rateTo = usdPerMajorScaled[to], rateTo > 0 else {
            return nil
        }
        // amount/10^expFrom major units * rateFrom = USD; / rateTo * 10^expTo = target minor units.
        let (numerator, o1) = Int128(amount).multipliedReportingOverflow(by: Int128(rateFrom))
        let (scaledNumerator, o2) = numerator.multipliedReportingOverflow(by: Int128(to.minorUnitsPerMajor))
        let (denominator, o3) = Int128(rateTo).multipliedReportingOverflow(by: Int128(from.minorUnitsPerMajor))
        guard !o1, !o2, !o3 else { return nil }
        return MoneyMath.divideRoundingHalfUp(scaledNumerator, denominator)
    }
}
