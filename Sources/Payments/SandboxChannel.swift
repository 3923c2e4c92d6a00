/// What a channel said about one charge.
public enum ChannelOutcome: Sendable, Equatable {
    case succeeded(reference: String)
    case declined
    /// Accepted; the result comes later through `notify`, or the payment times out.
    case pending(reference: String)
    /// A transient channel error: retry with backoff.
    case transientError
}

/// The sandbox behaviour every channel has (RULES "Sandbox channels"): the amount's last two
/// digits decide — 51 declined, 52 pending, 53 a transient error, anything else succeeds.
public enum SandboxChannel {
    public static func outcome(channel: String, amount: Int64, paymentNo: String) -> ChannelOutcome {
        let reference = "sbx_\(channel)_\(paymentNo)"
        switch amount % 100 {
        case 51: return .declined
        case 52: return .pending(reference: reference)
        case 53: return .transientError
        default: return .succeeded(reference: reference)
        }
    }
}
