/// A message the broker delivered (from a consumer or `basic.get`). Pure value.
///
/// `deliveryTag` is only meaningful together with `generation`: the generation
/// grows every time the connection's channel is (re)opened, after a reconnect or
/// a channel error. Acks and rejects for a delivery of an older generation are
/// dropped, because the broker has already requeued it.
public struct AMQPDelivery: Sendable {
    public let deliveryTag: UInt64
    public let redelivered: Bool
    public let exchange: String
    public let routingKey: String
    public let consumerTag: String
    public let body: [UInt8]
    public let properties: AMQPProperties
    /// Which (re)opening of the channel delivered it.
    public let generation: UInt64

    public init(deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String, consumerTag: String,
                body: [UInt8], properties: AMQPProperties, generation: UInt64) {
        self.deliveryTag = deliveryTag
        self.redelivered = redelivered
        self.exchange = exchange
        self.routingKey = routingKey
        self.consumerTag = consumerTag
        self.body = body
        self.properties = properties
        self.generation = generation
    }
}
