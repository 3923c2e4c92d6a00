/// What PayFleet asks of a payment channel (RULES "Sandbox channels"). Every channel, sandbox or
/// real PSP, is reached through one `ChannelAdapter`, and every call carries an idempotency key
/// derived from the resource and the operation (`ChannelKeys`): a repeated key gets the first
/// answer and moves no money twice, as real PSPs promise.
public enum ChannelOperation: String, Sendable, Codable, CaseIterable {
    /// Charge a payment, or hold the amount of a pre-authorization.
    case authorize
    /// Take (part of) a held amount.
    case capture
    /// Drop what is left of a hold.
    case void
    /// Give (part of) a charge back.
    case refund
}

/// One call to a channel.
public struct ChannelRequest: Sendable, Equatable {
    public var channel: String
    public var operation: ChannelOperation
    public var idempotencyKey: String
    /// Minor units of `currency`; nil for a void.
    public var amount: Int64?
    public var currency: Currency
    /// The resource the call is for (`pay_…`, `pa_…`): the channel's reference names it.
    public var resource: String

    public init(channel: String, operation: ChannelOperation, idempotencyKey: String, amount: Int64?, currency: Currency,
                resource: String) {
        self.channel = channel
        self.operation = operation
        self.idempotencyKey = idempotencyKey
        self.amount = amount
        self.currency = currency
        self.resource = resource
    }
}

/// What a channel answered.
public enum ChannelAnswer: Sendable, Equatable {
    /// Done; `reference` is the channel's id for it.
    case succeeded(reference: String)
    /// Accepted; the result comes later (through `notify`, or by asking with `status`).
    case pending(reference: String)
    /// Refused for good.
    case declined(reason: String)
    /// The channel failed before acting: the same call may be tried again (same key).
    case transientError(String)
    /// No answer came (a timeout): the call may or may not have taken effect. Ask with `status`.
    case noAnswer
}

/// What a channel says, when asked, about an earlier call (by its idempotency key).
public enum ChannelStatus: Sendable, Equatable {
    case succeeded(reference: String)
    case pending
    case failed
    /// The channel has no call with that key: it never took effect.
    case unknown
}

/// A payment channel: a sandbox, or an adapter to a real PSP.
public protocol ChannelAdapter: Sendable {
    /// Makes the call; a repeated idempotency key gets the first answer.
    func call(_ request: ChannelRequest) async throws -> ChannelAnswer
    /// Asks what became of the call made with `idempotencyKey` (Kill Bill's janitor does this
    /// before giving up on a payment).
    func status(channel: String, idempotencyKey: String) async throws -> ChannelStatus
}

/// The idempotency keys of channel calls, derived from the resource and the operation, so that a
/// retried or redelivered command repeats the same key and never moves money twice.
public enum ChannelKeys {
    /// The charge of a payment or the hold of a pre-authorization: one per resource.
    public static func authorize(_ resource: String) -> String { "\(resource):authorize" }
    /// A capture, per capture command (`commandKey`: the command's idempotency key), so that two
    /// captures of one pre-authorization are two calls and a redelivered one is the same call.
    public static func capture(_ preAuthNo: String, commandKey: String) -> String {
        "\(preAuthNo):capture:\(digest(commandKey))"
    }
    /// The void of a hold: one per pre-authorization (cancel and expiry void the same hold).
    public static func void(_ preAuthNo: String) -> String { "\(preAuthNo):void" }
    /// A refund, per refund command.
    public static func refund(_ paymentNo: String, commandKey: String) -> String { "\(paymentNo):refund:\(digest(commandKey))" }
    /// The compensating refund of a success the channel reported after the payment had ended.
    public static func reversal(_ paymentNo: String) -> String { "\(paymentNo):reverse" }

    static func digest(_ key: String) -> String { String(Identifiers.digestHex("channel-key|\(key)").prefix(16)) }
}
