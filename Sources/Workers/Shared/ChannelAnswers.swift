import Fleet
import Payments

/// What a capture or a refund makes of the channel's answer: either the money moved (with the
/// channel's reference), or the command's outcome without effect — declined is final
/// (`channel_declined`); a transient error or no answer is retried, and on the final attempt
/// becomes `channel_error`. The call's key is the command's, so a retry repeats the same call.
enum ChannelAnswers {
    enum Settled {
        case moved(reference: String)
        case stopped(Outcome)
    }

    static func settle<P>(_ answer: ChannelAnswer, at channel: String, doing what: String, command: Command<P>) -> Settled {
        switch answer {
        case .succeeded(let reference), .pending(let reference): return .moved(reference: reference)
        case .declined(let reason): return .stopped(.rejected(code: "channel_declined", message: reason))
        case .transientError(let reason) where !command.isFinalAttempt: return .stopped(.retryLater(reason))
        case .noAnswer where !command.isFinalAttempt: return .stopped(.retryLater("\(channel) did not answer the \(what)"))
        case .transientError, .noAnswer:
            return .stopped(.rejected(code: "channel_error", message: "\(channel) kept failing the \(what) after \(command.attempt) retries"))
        }
    }
}
