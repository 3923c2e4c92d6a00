/// Everything an `AMQPConnection` needs, fixed for its lifetime. Pure value.
///
/// - `connectionName`: shown by the broker (`rabbitmqctl list_connections
///   client_properties`) and used in logs, thread names and consumer tags.
/// - `confirms`: publisher confirms; `publish` then resolves on the broker's ack,
///   with at most `confirmWindow` publishes in flight.
/// - `prefetch`: `basic.qos` prefetch count for the channel; 0 means unlimited.
/// - `consumes` and `topology`: re-established after every reconnect.
/// - `heartbeatSeconds`: AMQP heartbeat proposed to the broker (0 disables).
/// - `reconnectInitialDelay`/`reconnectMaxDelay`: exponential backoff bounds.
/// - `confirmTimeout`: a publish whose confirm has not come by then fails with
///   `AMQPError.confirmTimeout` (the message may still arrive: treat it as not accepted and
///   publish again idempotently).
/// - `stampsUserId`: every publish carries this connection's user as `user_id` unless the message
///   names one, so consumers can tell who sent it (RabbitMQ refuses a wrong one).
public struct AMQPConfiguration: Sendable {
    public var url: AMQPURL
    public var connectionName: String
    public var confirms: Bool
    public var confirmWindow: Int
    public var prefetch: UInt16
    public var consumes: [ConsumeSpec]
    public var topology: AMQPTopology?
    public var heartbeatSeconds: Int
    public var reconnectInitialDelay: Duration
    public var reconnectMaxDelay: Duration
    public var confirmTimeout: Duration
    public var stampsUserId: Bool

    public init(url: AMQPURL, connectionName: String, confirms: Bool = false, confirmWindow: Int = 1000,
                prefetch: UInt16 = 0, consumes: [ConsumeSpec] = [], topology: AMQPTopology? = nil,
                heartbeatSeconds: Int = 30, reconnectInitialDelay: Duration = .milliseconds(100),
                reconnectMaxDelay: Duration = .seconds(5), confirmTimeout: Duration = .seconds(10),
                stampsUserId: Bool = true) {
        self.url = url
        self.connectionName = connectionName
        self.confirms = confirms
        self.confirmWindow = max(1, confirmWindow)
        self.prefetch = prefetch
        self.consumes = consumes
        self.topology = topology
        self.heartbeatSeconds = max(0, heartbeatSeconds)
        self.reconnectInitialDelay = reconnectInitialDelay
        self.reconnectMaxDelay = reconnectMaxDelay
        self.confirmTimeout = confirmTimeout
        self.stampsUserId = stampsUserId
    }
}
