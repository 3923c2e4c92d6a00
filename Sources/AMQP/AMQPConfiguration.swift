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

    public init(url: AMQPURL, connectionName: String, confirms: Bool = false, confirmWindow: Int = 1000,
                prefetch: UInt16 = 0, consumes: [ConsumeSpec] = [], topology: AMQPTopology? = nil,
                heartbeatSeconds: Int = 30, reconnectInitialDelay: Duration = .milliseconds(100),
                reconnectMaxDelay: Duration = .seconds(5)) {
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
    }
}
