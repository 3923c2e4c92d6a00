/// PostgreSQL array literals for array parameters (`$1::text[]`, `$1::bigint[]`).
public enum PostgresArray {
    /// Every element quoted, each backslash and double quote escaped by a backslash. (Not with
    /// `replacingOccurrences`: Foundation's string search was 2% of the authorize worker's CPU, for
    /// an order's payments.)
    public static func text(_ values: [String]) -> String {
        var out = "{"
        for (index, value) in values.enumerated() {
            if index > 0 { out += "," }
            out += "\""
            if value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") }) {
                for scalar in value.unicodeScalars {
                    if scalar == "\\" || scalar == "\"" { out += "\\" }
                    out.unicodeScalars.append(scalar)
                }
            } else {
                out += value
            }
            out += "\""
        }
        return out + "}"
    }

    /// Integers need no quoting.
    public static func bigint(_ values: [Int64]) -> String {
        "{" + values.map(String.init).joined(separator: ",") + "}"
    }
}
