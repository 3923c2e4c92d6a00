import Foundation
import Synchronization

/// The one source of wall-clock time in a process. The runtime (inbox, outbox, parking), the
/// periodic services and the handlers all read it, so a test can set and move time for all of
/// them at once. Reading it never blocks.
public struct WallClock: Sendable {
    private let read: @Sendable () -> Date

    public init(_ read: @escaping @Sendable () -> Date) { self.read = read }

    public var now: Date { read() }

    /// The system's clock.
    public static let system = WallClock { Date() }

    /// A clock that reads `time`, which a test sets and moves.
    public static func manual(_ time: ManualTime) -> WallClock { WallClock { time.now } }
}

/// Time a test controls: starts where it is told and moves only when moved.
public final class ManualTime: Sendable {
    private let current: Mutex<Date>

    public init(_ start: Date = Date()) { current = Mutex(start) }

    public var now: Date { current.withLock { $0 } }

    public func set(_ date: Date) { current.withLock { $0 = date } }

    public func advance(by seconds: TimeInterval) { current.withLock { $0 += seconds } }
}
