/// PostgreSQL array literals for array parameters (`$1::text[]`, `$1::bigint[]`).
public enum PostgresArray {
    /// Every element quoted and escaped.
    public static func text(_ values: [String]) -> String {
        "{" + values.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
            .joined(separator: ",") + "}"
    }

    /// Integers need no quoting.
    public static func bigint(_ values: [Int64]) -> String {
        "{" + values.map(String.init).joined(separator: ",") + "}"
    }
}
