import Foundation

/// The basic properties of a message. Pure value.
///
/// `persistent` maps to delivery mode 2 (1 when false). `timestamp` travels with
/// whole-second precision, as AMQP defines it. `userId` is the publishing connection's user, which
/// RabbitMQ checks: a publish naming another user is refused, so a delivery's `userId` says who
/// sent it. Properties not listed here (priority, ...) are neither sent nor read.
public struct AMQPProperties: Sendable, Equatable {
    public var contentType: String?
    public var persistent: Bool
    public var messageId: String?
    public var type: String?
    public var correlationId: String?
    public var replyTo: String?
    public var timestamp: Date?
    public var expiration: String?
    public var appId: String?
    /// Nil on a publish: the connection stamps its own user (see `AMQPConfiguration.stampsUserId`).
    public var userId: String?
    public var headers: AMQPTable

    public init(contentType: String? = nil, persistent: Bool = false, messageId: String? = nil,
                type: String? = nil, correlationId: String? = nil, replyTo: String? = nil,
                timestamp: Date? = nil, expiration: String? = nil, appId: String? = nil,
                userId: String? = nil, headers: AMQPTable = [:]) {
        self.contentType = contentType
        self.persistent = persistent
        self.messageId = messageId
        self.type = type
        self.correlationId = correlationId
        self.replyTo = replyTo
        self.timestamp = timestamp
        self.expiration = expiration
        self.appId = appId
        self.userId = userId
        self.headers = headers
    }
}
