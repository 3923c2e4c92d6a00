import Crypto
import Foundation

/// Identifiers every message carries (CONTRACT §2): command ids, and event ids that are
/// deterministic per command and type, so a redelivered duplicate re-emits the same id.
public enum MessageIds {
    /// The id of the `type` event caused by command `commandId` of merchant `merchantId` (nil: a
    /// system event), shaped like a UUID (version 8). Command ids are chosen by publishers, so two
    /// merchants may use the same one: the merchant is part of the id.
    public static func eventId(merchantId: String?, commandId: String, type: String) -> String {
        let scope = merchantId.map { "m|\($0)" } ?? "sys"
        return uuidString(Array(SHA256.hash(data: Array("event|\(scope)|\(commandId)|\(type)".utf8))))
    }

    /// A deterministic command id for a command derived from `seed` (a scheduled slot, a sweep's
    /// per-resource command), so that publishing it twice publishes the same message.
    public static func commandId(derivedFrom seed: String) -> String {
        uuidString(Array(SHA256.hash(data: Array("command|\(seed)".utf8))))
    }

    /// A fresh UUID string for a command id.
    public static func newCommandId() -> String { UUID().uuidString.lowercased() }

    /// Hex SHA-256 of `text` (request hashes; secrets are stored only this way).
    public static func sha256Hex(_ text: String) -> String {
        Hex.encode(SHA256.hash(data: Array(text.utf8)))
    }

    static func uuidString(_ bytes: [UInt8]) -> String {
        var b = Array(bytes.prefix(16))
        b[6] = (b[6] & 0x0F) | 0x80 // version 8
        b[8] = (b[8] & 0x3F) | 0x80 // RFC 4122 variant
        let hex = Hex.encode(b)
        let parts = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4),
                     hex.dropFirst(16).prefix(4), hex.dropFirst(20)]
        return parts.joined(separator: "-")
    }
}
