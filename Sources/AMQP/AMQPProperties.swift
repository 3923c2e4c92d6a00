import Foundation

/// The basic properties of a message. Pure value.
///
/// `persistent` maps to delivery mode 2 (1 when false). `timestamp` travels with
/// whole-second precision, as AMQP defines it. Properties not listed here
/// (priority, user-id, ...) are neither sent nor read.
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
    public var headers: AMQPTable

    public init(contentType: String? = nil, persistent: Bool = false, messageId: String? = nil,
                type: String? = nil, correlationId: String? = nil, replyTo: String? = nil,
                timestamp: Date? = nil, expiration: String? = nil, appId: String? = nil,
                headers: AMQPTable = [:]) {
        self.contentType = contentType
        self.persistent = persistent
        self.messageId = messageId
        self.type = type
        self.correlationId = correlationId
        self.replyTo = replyTo
        self.timestamp = timestamp
        self.expiration = expiration
        self.appId = appId
        self.headers = headers
    }
}
