import Logging
import ServiceLifecycle
import Synchronization

/// A configuration value kept fresh from its source: polls a cheap version number every
/// `interval` and reloads the value when the version changed, so a change made anywhere
/// (`PUT /api/v1/admin/routing`, the CLI) reaches every process within `interval` plus one load,
/// with no restart. `current` never blocks and never fails: a failed reload keeps the last value.
public final class HotSetting<Value: Sendable>: Service, Sendable {
    private struct Loaded: Sendable {
        var value: Value
        var version: Int64
    }

    private let state: Mutex<Loaded>
    private let name: String
    private let interval: Duration
    private let loadVersion: (@Sendable () async throws -> Int64)?
    private let load: @Sendable () async throws -> (Value, Int64)
    private let logger: Logger

    /// Loads the value once now (falling back to `initial` if the source is unreachable). Without
    /// a `version` source the value is reloaded every `interval`.
    public init(name: String, initial: Value, interval: Duration = .seconds(1), logger: Logger,
                version: (@Sendable () async throws -> Int64)?,
                load: @escaping @Sendable () async throws -> (Value, Int64)) async {
        self.name = name
        self.interval = interval
        self.loadVersion = version
        self.load = load
        self.logger = logger
        let first = try? await load()
        state = Mutex(Loaded(value: first?.0 ?? initial, version: first?.1 ?? -1))
    }

    public var current: Value { state.withLock { $0.value } }
    public var version: Int64 { state.withLock { $0.version } }

    public func run() async throws {
        try await PeriodicTask(name: "setting \(name)", interval: interval, logger: logger) { _ in
            await self.refresh()
            return .idle
        }.run()
    }

    /// Reloads now if the source's version differs from the loaded one.
    public func refresh() async {
        do {
            if let loadVersion {
                let latest = try await loadVersion()
                guard latest != version else { return }
            }
            let (value, loadedVersion) = try await load()
            state.withLock { $0 = Loaded(value: value, version: loadedVersion) }
            if loadVersion != nil {
                logger.info("reloaded setting", metadata: ["setting": "\(name)", "version": "\(loadedVersion)"])
            }
        } catch {
            logger.warning("could not reload setting; keeping the last one", metadata: ["setting": "\(name)", "error": "\(error)"])
        }
    }
}
