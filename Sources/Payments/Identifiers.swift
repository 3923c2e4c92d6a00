import Contract
import Crypto
import Foundation

/// Deterministic identifiers: the same command always names the same resource and the same event,
/// so a redelivered or re-published duplicate is recognised and re-emitted with the same id.
public enum Identifiers {
    /// `pay_` + 26 base32 characters derived from the merchant and the idempotency key.
    /// The ingress and the worker compute the same number without talking to each other.
    public static func paymentNo(merchantId: String, idempotencyKey: String) -> String {
        "pay_" + base32(digest("payment|\(merchantId)|\(idempotencyKey)").prefix(16))
    }

    /// `pa_` + 26 base32 characters derived from the merchant and the idempotency key of its
    /// `preauth.create` (as `paymentNo`: the ingress and the worker agree without talking).
    public static func preAuthNo(merchantId: String, idempotencyKey: String) -> String {
        "pa_" + base32(digest("preauth|\(merchantId)|\(idempotencyKey)").prefix(16))
    }

    /// The payment a capture command creates: derived from the pre-authorization and the capture
    /// command's idempotency key.
    public static func capturePaymentNo(merchantId: String, captureKey: String) -> String {
        "pay_" + base32(digest("capture|\(merchantId)|\(captureKey)").prefix(16))
    }

    /// `re_` + 26 base32 characters: the refund made by the refund command with this key.
    public static func refundNo(merchantId: String, idempotencyKey: String) -> String {
        "re_" + base32(digest("refund|\(merchantId)|\(idempotencyKey)").prefix(16))
    }

    /// A fresh random merchant id (`mch_` + 26 base32 characters; never contains a dot).
    public static func newMerchantId() -> String {
        "mch_" + base32(randomBytes(16))
    }

    /// A fresh random API key, shown to the merchant once (`sk_` + 43 base32 characters).
    public static func newAPIKey() -> String {
        "sk_" + base32(randomBytes(27))
    }

    /// A 64-bit seed derived from text (routing tie-breaks of a command replay identically).
    public static func seed(_ text: String) -> UInt64 {
        digest("seed|\(text)").prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    static func digest(_ text: String) -> [UInt8] { Array(SHA256.hash(data: Array(text.utf8))) }

    static func digestHex(_ text: String) -> String { Hex.encode(digest(text)) }

    static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    static func base32<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
        var output = "", buffer = 0, bits = 0
        for byte in bytes {
            buffer = (buffer << 8) | Int(byte)
            bits += 8
            while bits >= 5 {
                output.append(alphabet[(buffer >> (bits - 5)) & 31])
                bits -= 5
            }
        }
        if bits > 0 { output.append(alphabet[(buffer << (5 - bits)) & 31]) }
        return output
    }

}
