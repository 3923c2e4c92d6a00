import Foundation
import Metrics
import Prometheus

/// Prometheus metrics of one work queue (`payfleet_commands_*{queue=...}`).
public struct QueueMetrics: Sendable {
    let consumed: Metrics.Counter
    let succeeded: Metrics.Counter
    let rejected: Metrics.Counter
    let retried: Metrics.Counter
    /// Retries because a store was away (also counted in `retried`).
    let outageRetries: Metrics.Counter
    let parked: Metrics.Counter
    let duplicates: Metrics.Counter
    /// Incremented and decremented, never set: two commands ending together each recorded their
    /// own count into a gauge, in either order, and a last `1` stayed on an idle worker.
    let inFlight: Metrics.Meter
    let handling: Metrics.Timer

    public init(queue: String) {
        let dimensions = [("queue", queue)]
        consumed = Metrics.Counter(label: "payfleet_commands_consumed_total", dimensions: dimensions)
        succeeded = Metrics.Counter(label: "payfleet_commands_succeeded_total", dimensions: dimensions)
        rejected = Metrics.Counter(label: "payfleet_commands_rejected_total", dimensions: dimensions)
        retried = Metrics.Counter(label: "payfleet_commands_retried_total", dimensions: dimensions)
        outageRetries = Metrics.Counter(label: "payfleet_commands_outage_retries_total", dimensions: dimensions)
        parked = Metrics.Counter(label: "payfleet_commands_parked_total", dimensions: dimensions)
        duplicates = Metrics.Counter(label: "payfleet_commands_duplicate_total", dimensions: dimensions)
        inFlight = Metrics.Meter(label: "payfleet_commands_in_flight", dimensions: dimensions)
        handling = Metrics.Timer(label: "payfleet_command_handling_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
    }
}

/// The process-wide Prometheus registry, bootstrapped once.
public enum FleetMetrics {
    public static let registry: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        ]
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// Makes sure the registry is bootstrapped before the first metric is created.
    public static func bootstrap() { _ = registry }

    /// The text exposition format.
    public static func exposition() -> String { registry.emitToString() }
}
