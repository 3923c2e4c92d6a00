import Fleet
import Foundation
import Logging
import Payments
import Postgres
import Redis
import ServiceLifecycle
import Store

/// The live settings every payment worker routes and converts with, kept fresh from PostgreSQL
/// through the shared cache (RULES "Caching"): a change made anywhere (`PUT /api/v1/admin/routing`,
/// the CLI) reaches every process within about a second, with no restart. Workers that move no
/// payments (archive, export) build none of this.
public struct PaymentSettings: Sendable {
    /// Configuration documents and the risk blacklist through the shared cache.
    public let configuration: Configuration
    /// The routing table of `settings`, reloaded within about a second of a change.
    public let routing: HotSetting<RoutingConfig>
    /// The FX table of `settings` over the defaults, reloaded within about a second of a change.
    public let fx: HotSetting<FXTable>
    /// Every channel's live outcomes and open circuits (shared in Redis), refreshed every 500 ms.
    public let channels: HotSetting<LiveChannels>

    /// Loads the settings once now; run `services` to keep them fresh.
    public init(postgres pool: PostgresPool, redis: RedisClient, logger: Logger) async {
        let configuration = Configuration(redis: redis)
        self.configuration = configuration
        let routing = await HotSetting(name: "routing", initial: RoutingConfig.defaults, logger: logger,
                                       version: { try await configuration.version(of: .routing, pool: pool) },
                                       load: { try await configuration.document(.routing, pool: pool) })
        self.routing = routing
        fx = await HotSetting(name: "fx", initial: FXTable.defaults, logger: logger,
                              version: { try await configuration.version(of: .fx, pool: pool) },
                              load: {
                                  let (table, version) = try await configuration.document(.fx, pool: pool)
                                  return (table.overDefaults(), version)
                              })
        let channelStats = ChannelStatsStore(redis: redis)
        channels = await HotSetting(name: "channel stats", initial: LiveChannels(), interval: .milliseconds(500), logger: logger,
                                    version: nil,
                                    load: { (LiveChannels(try await channelStats.snapshot(routing.current.channels.map(\.name))), 0) })
    }

    /// The services that keep the settings fresh.
    public var services: [any Service] { [routing, fx, channels] }
}

/// Live routing inputs of all channels: the window's stats and the open circuits.
public struct LiveChannels: Sendable {
    public var stats: [String: ChannelStats] = [:]
    public var open: Set<String> = []
    public init() {}
    init(_ snapshot: (stats: [String: ChannelStats], open: Set<String>)) {
        stats = snapshot.stats
        open = snapshot.open
    }
}
