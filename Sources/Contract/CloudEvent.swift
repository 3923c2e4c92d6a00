/// The CloudEvents 1.0 structured-mode envelope (CONTRACT §2) of every command and event.
public struct CloudEvent<Payload: Codable & Sendable>: Codable, Sendable {
    public var specversion: String
    public var id: String
    public var type: String
    public var source: String
    public var time: String?
    public var datacontenttype: String?
    public var merchantid: String?
    public var idempotencykey: String?
    public var traceparent: String?
    public var data: Payload

    public init(id: String, type: String, source: String, time: String?, merchantId: String?,
                idempotencyKey: String? = nil, traceparent: String? = nil, data: Payload) {
        self.specversion = "1.0"
        self.id = id
        self.type = type
        self.source = source
        self.time = time
        self.datacontenttype = "application/json"
        self.merchantid = merchantId
        self.idempotencykey = idempotencyKey
        self.traceparent = traceparent
        self.data = data
    }

    /// The content type of the AMQP message that carries an envelope.
    public static var contentType: String { "application/cloudevents+json" }
}

/// The `data` of `command.rejected`: why a command took no effect.
public struct CommandRejection: Sendable, Codable, Equatable {
    public var commandId: String
    public var commandType: String
    public var code: String
    public var message: String
    public var errors: [FieldError]

    enum CodingKeys: String, CodingKey {
        case commandId = "command_id", commandType = "command_type", code, message, errors
    }

    public init(commandId: String, commandType: String, code: String, message: String, errors: [FieldError] = []) {
        self.commandId = commandId
        self.commandType = commandType
        self.code = code
        self.message = message
        self.errors = errors
    }
}

/// Event and command type names, and the routing keys of events (CONTRACT §1-2).
public enum EventRouting {
    public static let commandRejected = "command.rejected"

    /// `m.<merchant_id>.<type>` for a merchant's events, `sys.<type>` otherwise.
    public static func routingKey(type: String, merchantId: String?) -> String {
        if let merchantId, !merchantId.isEmpty, !merchantId.contains(".") { return "m.\(merchantId).\(type)" }
        return "sys.\(type)"
    }
}
