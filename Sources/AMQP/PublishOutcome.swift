/// What the broker said about one publish.
///
/// With publisher confirms: `.acked` means the broker took responsibility for the
/// message (for persistent messages to durable queues: it is on disk); `.nacked`
/// means it did not; `.returned` means a mandatory message could not be routed to
/// any queue (the broker also acks it, but nobody will receive it). Without
/// confirms `.acked` only means the message was written to the socket.
public enum PublishOutcome: Sendable, Equatable {
    case acked
    case nacked
    case returned(replyCode: Int, replyText: String)
}
