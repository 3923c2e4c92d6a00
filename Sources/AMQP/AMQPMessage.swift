/// A message to publish: where it goes, its body and properties. Pure value.
///
/// `mandatory` asks the broker to return the message (`PublishOutcome.returned`)
/// when no queue is bound to receive it.
public struct AMQPMessage: Sendable {
    public var exchange: String
    public var routingKey: String
    public var body: [UInt8]
    public var properties: AMQPProperties
    public var mandatory: Bool

    public init(exchange: String, routingKey: String, body: [UInt8], properties: AMQPProperties = .init(),
                mandatory: Bool = false) {
        self.exchange = exchange
        self.routingKey = routingKey
        self.body = body
        self.properties = properties
        self.mandatory = mandatory
    }
}
