import Foundation
import Logging
import Synchronization

/// Metadata every log line of the current task carries (the command, its merchant and trace),
/// read by the log handler's metadata provider.
public enum LogContext {
    @TaskLocal public static var metadata: Logger.Metadata = [:]
    public static let provider = Logger.MetadataProvider { metadata }
}

/// How log lines are written: `json` (one object per line, for collectors; the default) or `text`
/// (for a terminal).
public enum LogFormat: String, Sendable, CaseIterable {
    case json, text
}

/// Writes log events to standard error, one line each, with every value that came from outside
/// escaped, so a message id holding a newline and a JSON object stays inside one line.
///
/// JSON lines have these keys: `time` (RFC 3339, milliseconds, UTC), `level`, `label` (the
/// executable), `message`, then the event's metadata, flattened: among them `trace_id` (from a
/// W3C `traceparent`), `command_id`, `merchant_id`, `queue`, `error`. Text lines read
/// `time level label: message key=value ...`, with control characters escaped.
public struct FleetLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let format: LogFormat

    public init(label: String, level: Logger.Level, format: LogFormat, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.logLevel = level
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
                    file: String, function: String, line: UInt) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let explicit { all.merge(explicit) { _, new in new } }
        let time = Self.timestamp()
        var out: String
        switch format {
        case .json:
            out = "{\"time\":\(Self.quoted(time)),\"level\":\(Self.quoted(level.rawValue)),\"label\":\(Self.quoted(label)),"
                + "\"message\":\(Self.quoted(message.description))"
            for key in all.keys.sorted() where !["time", "level", "label", "message"].contains(key) {
                out += ",\(Self.quoted(key)):\(Self.quoted(Self.flat(all[key]!)))"
            }
            out += "}\n"
        case .text:
            out = "\(time) \(level.rawValue) \(label): \(Self.escaped(message.description))"
            for key in all.keys.sorted() { out += " \(Self.escaped(key))=\(Self.escaped(Self.flat(all[key]!)))" }
            out += "\n"
        }
        Self.write(out)
    }

    static func flat(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): "[" + values.map(flat).joined(separator: ",") + "]"
        case .dictionary(let values): "{" + values.keys.sorted().map { "\($0)=\(flat(values[$0]!))" }.joined(separator: ",") + "}"
        }
    }

    /// A JSON string literal: quotes, backslashes and every control character escaped.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// Text-format escaping: control characters (newlines included) as `\u{..}`.
    static func escaped(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029 {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec, now.tv_nsec / 1_000_000)
    }

    /// One `write` per line, so lines of concurrent tasks never interleave.
    private static let lock = Mutex<Void>(())
    static func write(_ line: String) {
        var line = line
        lock.withLock { _ in
            line.withUTF8 { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = Foundation.write(2, bytes.baseAddress! + offset, bytes.count - offset)
                    if written <= 0 { break }
                    offset += written
                }
            }
        }
    }
}
