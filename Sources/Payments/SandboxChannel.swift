/// The sandbox behaviour every channel has (RULES "Sandbox channels"), as a pure rule: the
/// amount's last two digits decide what a call does. `PaymentServices.SandboxChannels` carries it
/// out behind the `ChannelAdapter` interface a real PSP adapter implements.
public enum SandboxChannel {
    public enum Behaviour: String, Sendable, Equatable {
        /// Done at once.
        case succeed
        /// Refused (`51`).
        case decline
        /// Accepted; the result comes later through `notify`, or the payment times out (`52`).
        case pend
        /// A transient channel error: the same call may be tried again (`53`).
        case transient
        /// The call takes effect but its answer never arrives, as in a timeout (`54`): asked later,
        /// the channel tells the truth (succeeded).
        case noAnswer = "no_answer"
    }

    /// What a call of `operation` for `amount` does. Charges and holds follow all five rules;
    /// captures and refunds can be declined or fail transiently; voids always succeed.
    public static func behaviour(of operation: ChannelOperation, amount: Int64?) -> Behaviour {
        let digits = (amount ?? 0) % 100
        switch operation {
        case .authorize:
            switch digits {
            case 51: return .decline
            case 52: return .pend
            case 53: return .transient
            case 54: return .noAnswer
            default: return .succeed
            }
        case .capture, .refund:
            switch digits {
            case 51: return .decline
            case 53: return .transient
            default: return .succeed
            }
        case .void:
            return .succeed
        }
    }

    /// The channel's reference for a call.
    public static func reference(channel: String, request: ChannelRequest) -> String {
        request.operation == .authorize ? "sbx_\(channel)_\(request.resource)" : "sbx_\(channel)_\(request.idempotencyKey)"
    }
}
