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
        return uuidString(SHA256.hash(data: Array("event|\(scope)|\(commandId)|\(type)".utf8)))
    }

    /// A deterministic command id for a command derived from `seed` (a scheduled slot, a sweep's
    /// per-resource command), so that publishing it twice publishes the same message.
    public static func commandId(derivedFrom seed: String) -> String {
        uuidString(SHA256.hash(data: Array("command|\(seed)".utf8)))
    }

    /// A fresh UUID string for a command id.
    public static func newCommandId() -> String { UUID().uuidString.lowercased() }

    /// Hex SHA-256 of `text` (request hashes; secrets are stored only this way).
    public static func sha256Hex(_ text: String) -> String {
        Hex.encode(SHA256.hash(data: Array(text.utf8)))
    }

    /// The digest's first 16 bytes as a version 8 UUID's text, written straight into the string.
    static func uuidString(_ digest: SHA256.Digest) -> String {
        digest.withUnsafeBytes { bytes in
            String(unsafeUninitializedCapacity: 36) { text in
                var end = 0
                for index in 0..<16 {
                    if index == 4 || index == 6 || index == 8 || index == 10 {
                        text[end] = UInt8(ascii: "-")
                        end += 1
                    }
                    var byte = bytes[index]
                    if index == 6 { byte = (byte & 0x0F) | 0x80 }  // version 8
                    if index == 8 { byte = (byte & 0x3F) | 0x80 }  // RFC 4122 variant
                    text[end] = Hex.digit(byte >> 4)
                    text[end + 1] = Hex.digit(byte & 0x0F)
                    end += 2
                }
                return end
            }
        }
    }
}
