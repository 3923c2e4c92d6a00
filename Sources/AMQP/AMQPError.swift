/// Every failure the AMQP module reports. No C status code or pointer escapes it.
///
/// - `connectionLost`: the connection (or the channel) went away while the operation
///   was in flight; for a publish the outcome is unknown and the caller decides whether
///   to publish again.
/// - `notConnected`: nothing was sent; the connection is down (reconnecting).
/// - `channelClosed`: the broker refused this one operation with a channel error
///   (e.g. 404 NOT_FOUND, 406 PRECONDITION_FAILED); the connection reopens its channel
///   by itself.
/// - `closed`: `close()` was called on this connection.
public enum AMQPError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidURL(String)
    case connectionFailed(String)
    case notConnected
    case connectionLost(String)
    case channelClosed(code: Int, text: String)
    case timeout
    /// The broker did not confirm a publish within `AMQPConfiguration.confirmTimeout`.
    case confirmTimeout
    case closed

    public var description: String {
        switch self {
        case .invalidURL(let reason): "invalid AMQP URL: \(reason)"
        case .connectionFailed(let reason): "AMQP connection failed: \(reason)"
        case .notConnected: "AMQP connection is not connected"
        case .connectionLost(let reason): "AMQP connection lost: \(reason)"
        case .channelClosed(let code, let text): "AMQP channel closed by broker: \(code) \(text)"
        case .timeout: "AMQP operation timed out"
        case .confirmTimeout: "the broker did not confirm the publish in time"
        case .closed: "AMQP connection was closed"
        }
    }
}
