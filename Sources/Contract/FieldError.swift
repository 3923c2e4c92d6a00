/// One reason a request or command is invalid, naming the field (a JSON path such as `customer.email`).
public struct FieldError: Sendable, Codable, Equatable, CustomStringConvertible {
    public var field: String
    public var message: String

    public init(_ field: String, _ message: String) {
        self.field = field
        self.message = message
    }

    public var description: String { "\(field): \(message)" }
}

/// Every field error of one request.
public struct ValidationFailure: Error, Sendable, Equatable {
    public var errors: [FieldError]
    public init(_ errors: [FieldError]) { self.errors = errors }

    /// One line naming every failing field, for `detail` and logs.
    public var summary: String { errors.map(\.description).joined(separator: "; ") }
}

/// Text checks shared by every validator.
public enum TextRules {
    /// True when every scalar is printable: no control, surrogate, private-use, unassigned,
    /// or line/paragraph separator (such text breaks logs, CSV and terminals).
    public static func isPrintable(_ text: String) -> Bool {
        // Printable ASCII (what nearly every field is) needs no Unicode property lookup.
        if text.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) { return true }
        return text.unicodeScalars.allSatisfy { scalar in
            switch scalar.properties.generalCategory {
            case .control, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator: false
            default: true
            }
        }
    }

    /// Quotes `text` for a log line: printable ASCII kept, everything else escaped, length capped.
    public static func forLog(_ text: String, limit: Int = 200) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(limit) {
            if scalar.isASCII, scalar.value >= 0x20, scalar.value != 0x7F, scalar != "\\", scalar != "\"" {
                out.unicodeScalars.append(scalar)
            } else {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            }
        }
        if text.unicodeScalars.count > limit { out += "…" }
        return "\"\(out)\""
    }
}
