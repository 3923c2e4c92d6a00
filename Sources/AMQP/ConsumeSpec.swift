/// What one subscription asks of the broker: `basic.consume` on
/// `queue`. With `noAck` the broker forgets a message once sent (no `ack` needed or
/// allowed); `exclusive` makes this the queue's only consumer.
public struct ConsumeSpec: Sendable, Equatable {
    public var queue: String
    public var noAck: Bool
    public var exclusive: Bool

    public init(queue: String, noAck: Bool = false, exclusive: Bool = false) {
        self.queue = queue
        self.noAck = noAck
        self.exclusive = exclusive
    }
}
