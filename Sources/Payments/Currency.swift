/// A currency PayFleet accepts, with the exponent of its minor unit.
///
/// Amounts are always integer minor units (`Int64`): cents for USD, yen for JPY,
/// satoshi for BTC, gwei for ETH. The table is closed: an unknown code is rejected.
public enum Currency: String, Sendable, Codable, CaseIterable, Hashable {
    case JPY, USD, CNY, EUR, GBP, SGD, BTC, ETH, USDT

    /// Digits after the decimal point of one major unit (RULES: JPY 0, fiat 2, BTC 8, USDT 6, ETH 9).
    public var exponent: Int {
        switch self {
        case .JPY: 0
        case .USD, .CNY, .EUR, .GBP, .SGD: 2
        case .BTC: 8
        case .USDT: 6
        case .ETH: 9
        }
    }

    /// A state currency (not BTC, ETH or USDT): the only kind a merchant's base currency may be.
    public var isFiat: Bool {
        switch self {
        case .JPY, .USD, .CNY, .EUR, .GBP, .SGD: true
        case .BTC, .ETH, .USDT: false
        }
    }

    /// 10^exponent, the number of minor units in one major unit.
    public var minorUnitsPerMajor: Int64 {
        var result: Int64 = 1
        for _ in 0..<exponent { result *= 10 }
        return result
    }

    /// Formats minor units as a decimal string in major units (`12345` USD -> `"123.45"`).
    public func format(_ minorUnits: Int64) -> String {
        guard exponent > 0 else { return String(minorUnits) }
        let negative = minorUnits < 0
        let magnitude = minorUnits.magnitude
        let scale = UInt64(minorUnitsPerMajor)
        var fraction = String(magnitude % scale)
        fraction = String(repeating: "0", count: exponent - fraction.count) + fraction
        return (negative ? "-" : "") + String(magnitude / scale) + "." + fraction
    }
}

/// Currencies key JSON objects by their code: `{"USD": 100}`.
extension Currency: CodingKeyRepresentable {}
