import Foundation

/// The outcome of one statement: its rows (text format, already copied out of libpq) and the
/// count libpq reports for it (`PQcmdTuples`: rows inserted, updated, deleted or selected).
public struct PostgresResult: Sendable {
    public let rows: [PostgresRow]
    public let affectedRows: Int
    public var first: PostgresRow? { rows.first }

    init(rows: [PostgresRow], affectedRows: Int) {
        self.rows = rows
        self.affectedRows = affectedRows
    }
}

/// A result's rows with every cell's text (as PostgreSQL printed it, UTF-8) packed into one byte
/// buffer: one allocation for the whole result instead of a `String` per cell.
public struct PostgresPackedResult: Sendable {
    public let rowCount: Int
    public let columnCount: Int
    let bytes: [UInt8]
    /// Two per cell, row by row: where its bytes start and end (-1, -1 for NULL).
    let bounds: [Int32]

    init(rowCount: Int, columnCount: Int, bytes: [UInt8], bounds: [Int32]) {
        self.rowCount = rowCount
        self.columnCount = columnCount
        self.bytes = bytes
        self.bounds = bounds
    }

    /// The cell's bytes, or nil for NULL.
    public func cell(_ row: Int, _ column: Int) -> ArraySlice<UInt8>? {
        let index = (row * columnCount + column) * 2
        let start = Int(bounds[index])
        return start < 0 ? nil : bytes[start..<Int(bounds[index + 1])]
    }

    /// The cell as text, or nil for NULL.
    public func string(_ row: Int, _ column: Int) -> String? {
        cell(row, column).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// One row, as the text PostgreSQL printed for each column (nil for NULL).
///
/// The typed accessors throw `PostgresError` (`column` set) when the column is missing, NULL
/// (for the non-optional ones) or its text does not parse as the type asked for.
public struct PostgresRow: Sendable {
    final class Layout: Sendable {
        let names: [String]
        let index: [String: Int]
        init(names: [String]) {
            self.names = names
            var index: [String: Int] = [:]
            // With duplicate names the first column wins, as in most drivers.
            for (position, name) in names.enumerated() where index[name] == nil { index[name] = position }
            self.index = index
        }
    }

    let layout: Layout
    let values: [String?]

    init(layout: Layout, values: [String?]) {
        self.layout = layout
        self.values = values
    }

    /// Column names in result order.
    public var columns: [String] { layout.names }

    /// The raw text of a column, or nil for NULL or a missing column.
    public subscript(column: String) -> String? {
        guard let position = layout.index[column] else { return nil }
        return values[position]
    }

    /// The raw text of the column at `position`, or nil for NULL.
    public subscript(position: Int) -> String? { values[position] }

    /// True when the row has this column.
    public func contains(_ column: String) -> Bool { layout.index[column] != nil }

    // MARK: non-optional

    public func string(_ column: String) throws -> String { try decode(column, "text") { $0 } }
    public func int64(_ column: String) throws -> Int64 { try decode(column, "an integer") { Int64($0) } }
    public func int(_ column: String) throws -> Int { try decode(column, "an integer") { Int($0) } }
    public func int32(_ column: String) throws -> Int32 { try decode(column, "an int4") { Int32($0) } }
    public func bool(_ column: String) throws -> Bool { try decode(column, "a boolean", Self.parseBool) }
    public func double(_ column: String) throws -> Double { try decode(column, "a number", Self.parseDouble) }
    /// `timestamptz` / `timestamp` (as UTC) / `date` text, e.g. `2026-11-25 01:02:03.123456+00`.
    public func date(_ column: String) throws -> Date { try decode(column, "a timestamp", PostgresTimestamp.parse) }
    /// `bytea` in hex output format (`\x...`, the server default).
    public func bytes(_ column: String) throws -> [UInt8] { try decode(column, "bytea hex", Self.parseBytea) }
    public func uuid(_ column: String) throws -> UUID { try decode(column, "a uuid") { UUID(uuidString: $0) } }

    // MARK: optional (NULL -> nil; a missing column or bad text still throws)

    public func optionalString(_ column: String) throws -> String? { try decodeOptional(column, "text") { $0 } }
    public func optionalInt64(_ column: String) throws -> Int64? { try decodeOptional(column, "an integer") { Int64($0) } }
    public func optionalInt(_ column: String) throws -> Int? { try decodeOptional(column, "an integer") { Int($0) } }
    public func optionalInt32(_ column: String) throws -> Int32? { try decodeOptional(column, "an int4") { Int32($0) } }
    public func optionalBool(_ column: String) throws -> Bool? { try decodeOptional(column, "a boolean", Self.parseBool) }
    public func optionalDouble(_ column: String) throws -> Double? { try decodeOptional(column, "a number", Self.parseDouble) }
    public func optionalDate(_ column: String) throws -> Date? { try decodeOptional(column, "a timestamp", PostgresTimestamp.parse) }
    public func optionalBytes(_ column: String) throws -> [UInt8]? { try decodeOptional(column, "bytea hex", Self.parseBytea) }
    public func optionalUUID(_ column: String) throws -> UUID? { try decodeOptional(column, "a uuid") { UUID(uuidString: $0) } }

    // MARK: parsing

    private func decode<T>(_ column: String, _ kind: String, _ parse: (String) -> T?) throws -> T {
        guard let value = try decodeOptional(column, kind, parse) else {
            throw PostgresError.decoding(column: column, reason: "is NULL")
        }
        return value
    }

    private func decodeOptional<T>(_ column: String, _ kind: String, _ parse: (String) -> T?) throws -> T? {
        guard let position = layout.index[column] else {
            throw PostgresError.decoding(column: column, reason: "no such column (have \(layout.names))")
        }
        guard let text = values[position] else { return nil }
        guard let value = parse(text) else {
            throw PostgresError.decoding(column: column, reason: "\"\(text.prefix(64))\" is not \(kind)")
        }
        return value
    }

    static func parseBool(_ text: String) -> Bool? {
        switch text {
        case "t", "true": return true
        case "f", "false": return false
        default: return nil
        }
    }

    static func parseDouble(_ text: String) -> Double? {
        switch text {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default: return Double(text)
        }
    }

    static func parseBytea(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0 else {
            return nil
        }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count / 2 - 1)
        var i = 2
        while i < utf8.count {
            guard let high = nibble(utf8[i]), let low = nibble(utf8[i + 1]) else { return nil }
            bytes.append(high << 4 | low)
            i += 2
        }
        return bytes
    }
}
