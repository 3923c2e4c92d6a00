import AMQP
import Contract
import Foundation

/// A message a worker set aside for an operator (CONTRACT §1: "a parking queue an operator can
/// list, inspect and replay"), and the one place its format is written and read: the runtime
/// parks with these headers; `payfleet parked` lists, shows and replays by them.
public struct ParkedMessage: Sendable {
    public let messageId: String
    public let type: String
    /// The work queue it came from (where a replay sends it).
    public let queue: String
    public let reason: String
    public let parkedAt: String
    public let delivery: AMQPDelivery

    /// Reads a message taken from `payfleet.parked`: parked by a worker, or dead-lettered by the
    /// broker itself (delivery limit), which records the queue and reason in `x-death`.
    public init(_ delivery: AMQPDelivery) {
        self.delivery = delivery
        let headers = delivery.properties.headers
        func text(_ key: String) -> String? { if case .string(let value)? = headers[key] { value } else { nil } }
        let death: AMQPTable? = if case .array(let deaths)? = headers["x-death"], case .table(let first)? = deaths.first { first } else { nil }
        func deathText(_ key: String) -> String? { if case .string(let value)? = death?[key] { value } else { nil } }
        messageId = delivery.properties.messageId ?? "-"
        type = delivery.properties.type ?? "-"
        queue = text(FleetHeaders.parkedQueue) ?? deathText("queue") ?? delivery.routingKey
        reason = text(FleetHeaders.parkedReason) ?? deathText("reason").map { "broker: \($0)" } ?? "unknown"
        parkedAt = text(FleetHeaders.parkedAt) ?? "-"
    }

    /// The properties of a message parked from `queue` by `parkedBy`, with why and when.
    static func parking(_ properties: AMQPProperties, reason: String, queue: String, at time: Date, by parkedBy: String) -> AMQPProperties {
        var properties = properties
        properties.persistent = true
        properties.headers[FleetHeaders.parkedReason] = .string(String(reason.prefix(1000)))
        properties.headers[FleetHeaders.parkedQueue] = .string(queue)
        properties.headers[FleetHeaders.parkedAt] = .string(Timestamp.format(time))
        properties.headers[FleetHeaders.parkedBy] = .string(parkedBy)
        return properties
    }

    /// The properties to send it back with: the runtime's retry and parking headers and the
    /// broker's dead-letter records removed, so the replay starts with a fresh retry budget.
    public var replayProperties: AMQPProperties {
        var properties = delivery.properties
        for key in [FleetHeaders.retryCount, FleetHeaders.retryOutage, FleetHeaders.retryDelay, FleetHeaders.retryReason,
                    FleetHeaders.parkedReason, FleetHeaders.parkedQueue, FleetHeaders.parkedAt, FleetHeaders.parkedBy, "x-death",
                    "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason", "x-delivery-count"] {
            properties.headers[key] = nil
        }
        // The operator re-publishes as itself; a message the broker parked still names its sender.
        if let sender = properties.userId {
            if properties.headers[FleetHeaders.publisher] == nil { properties.headers[FleetHeaders.publisher] = .string(sender) }
            properties.userId = nil
        }
        return properties
    }

    /// The fields an operator sees in a list, tab-free.
    public var listLine: String {
        [messageId, type, queue, parkedAt, reason]
            .map { $0.replacingOccurrences(of: "\t", with: " ").replacingOccurrences(of: "\n", with: " ") }
            .joined(separator: "\t")
    }
}
