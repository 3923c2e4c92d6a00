import Fleet
import Foundation
import Logging
import Payments
import Postgres
import Store

/// What every payment worker builds on its connections: the limit ledger and its durable record,
/// the channels, and the pins of first decisions. The channels' and pins' writes go through a
/// small pool of their own: they must never share the command's transaction (a rollback must not
/// erase them), and a command waiting for its second connection must not wait behind other
/// commands' transactions.
public struct PaymentContext: Sendable {
    public let environment: WorkerEnvironment
    public let options: PaymentOptions
    public let ledger: LimitLedger
    public let record: LimitRecord
    public let channels: any ChannelAdapter
    public let pins: CommandPins
    /// The side pool of `channels` and `pins`.
    public let sidePool: PostgresPool

    /// - Parameter channels: the channels to call; the sandbox's by default (tests script their own).
    public init(environment: WorkerEnvironment, options: PaymentOptions, channels: (any ChannelAdapter)? = nil) throws {
        self.environment = environment
        self.options = options
        ledger = LimitLedger(redis: environment.redis)
        record = LimitRecord(ledger: ledger, pool: environment.postgres)
        sidePool = PostgresPool(configuration: try PostgresConfiguration(url: environment.options.connections.databaseURL),
                                size: max(2, environment.options.concurrency / 4), logger: environment.logger)
        self.channels = channels ?? SandboxChannels(pool: sidePool, latency: .milliseconds(options.sandboxLatencyMilliseconds),
                                                    failureRate: options.sandboxFailureRate)
        pins = CommandPins(pool: sidePool)
    }

    public var clock: WallClock { environment.clock }
    public var logger: Logger { environment.logger }

    /// The background limit sync, unless turned off (`--limit-sync-interval 0`). Every payment
    /// worker runs one; a leader lock lets one replica at a time do the work.
    public var limitSync: LimitSyncService? {
        options.limitSyncInterval > 0
            ? LimitSyncService(record: record, interval: .seconds(options.limitSyncInterval), clock: clock, logger: logger)
            : nil
    }
}
