/// Bounded retries with exponential backoff through the delay queues of `topology/definitions.json`
/// (`payfleet.retry.<level>`), one queue per level so that a delay never blocks a queue head.
public struct RetryPolicy: Sendable, Equatable {
    /// The delay levels, shortest first, as named by the `x-retry-delay` header.
    public static let levels = ["1s", "5s", "30s", "2m", "10m"]

    /// How many retries a command gets before it is parked.
    public var maxRetries: Int

    public init(maxRetries: Int = 5) { self.maxRetries = max(0, maxRetries) }

    /// The delay level for the retry after `attempt` (0-based): 1s, 5s, 30s, 2m, then 10m.
    public func delayLevel(afterAttempt attempt: Int) -> String {
        Self.levels[min(max(0, attempt), Self.levels.count - 1)]
    }

    public func isFinal(attempt: Int) -> Bool { attempt >= maxRetries }

    /// The attempt number an `x-retry-count` header claims, clamped to `0...maxRetries`: any
    /// publisher can set the header, so a negative value (which would never be final) or one past
    /// the bound is not taken at its word.
    public func attempt(fromHeader value: Int64?) -> Int {
        Int(min(max(0, value ?? 0), Int64(maxRetries)))
    }

    /// How many outage retries an `x-retry-outage` header claims, clamped to the delay levels'
    /// range: it only picks the next delay (1s, 5s, … 10m), so a forged value can at worst delay
    /// the sender's own command by ten minutes.
    public func outages(fromHeader value: Int64?) -> Int {
        Int(min(max(0, value ?? 0), Int64(Self.levels.count - 1)))
    }
}

/// Header names the runtime sets on messages it moves (retry and parking).
public enum FleetHeaders {
    public static let retryCount = "x-retry-count"
    public static let retryDelay = "x-retry-delay"
    public static let retryReason = "x-retry-reason"
    /// Retries because a store was away (`StoreOutage`); they do not count in `x-retry-count`.
    public static let retryOutage = "x-retry-outage"
    public static let parkedReason = "x-parked-reason"
    public static let parkedQueue = "x-parked-queue"
    public static let parkedAt = "x-parked-at"
    public static let parkedBy = "x-parked-by"
    /// The broker user a command came from, when the fleet re-publishes it as itself (retry,
    /// parking, replay); believed only on messages the fleet's own users published.
    public static let publisher = "x-payfleet-publisher"
}

/// Exchange names of CONTRACT §1 and `topology/definitions.json`.
public enum Exchanges {
    public static let commands = "payfleet.commands"
    public static let events = "payfleet.events"
    public static let retry = "payfleet.retry"
    public static let parking = "payfleet.parking"
    public static let parkedQueue = "payfleet.parked"
}
