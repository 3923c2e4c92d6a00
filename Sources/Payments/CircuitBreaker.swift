import Foundation

/// Per-channel circuit breaker (RULES "Routing"): a channel whose live success rate is below 50%
/// over at least 20 attempts is skipped for 60 s, then tried again. Pure: time is passed in.
public struct CircuitBreaker: Sendable, Equatable {
    public static let openFor: TimeInterval = 60
    /// Channel name -> until when it is skipped.
    public private(set) var openUntil: [String: Date] = [:]

    public init() {}

    /// Feeds a channel's sliding-window stats; opens its circuit when they are bad enough.
    public mutating func observe(_ channel: String, stats: ChannelStats, at now: Date) {
        if ChannelRouter.shouldOpenCircuit(stats), !isOpen(channel, at: now) {
            openUntil[channel] = now.addingTimeInterval(Self.openFor)
        }
    }

    public func isOpen(_ channel: String, at now: Date) -> Bool {
        guard let until = openUntil[channel] else { return false }
        return now < until
    }

    /// The channels to skip now (for `ChannelRouter.decide(openCircuits:)`).
    public func openChannels(at now: Date) -> Set<String> {
        Set(openUntil.filter { now < $0.value }.keys)
    }
}
