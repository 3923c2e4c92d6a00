import Contract
import Foundation
import Postgres

/// The inbox: "this command was done", recorded in the same transaction as the command's effect.
///
/// Claiming inserts the (merchant, idempotency key) row; a concurrent duplicate blocks on the
/// unique key until the first transaction ends, then sees its stored outcome.
enum Inbox {
    struct Stored: Sendable {
        let requestHash: String
        let commandId: String
        let outcomeEvent: String?
        let outcomeRoutingKey: String?
        let outcomeType: String?
    }

    /// Claims the key: affects one row when this transaction now owns it, none when it was done before.
    static func claim(merchantId: String, key: String, commandId: String, commandType: String,
                      requestHash: String, at time: Date) -> PostgresStatement {
        PostgresStatement("""
            INSERT INTO inbox (merchant_id, idempotency_key, command_id, command_type, request_hash, created_at)
            VALUES ($1, $2, $3, $4, $5, $6::timestamptz) ON CONFLICT (merchant_id, idempotency_key) DO NOTHING
            """, [merchantId, key, commandId, commandType, requestHash, time])
    }

    static func stored(merchantId: String, key: String, on tx: PostgresConnection) async throws -> Stored? {
        try await tx.query("""
            SELECT request_hash, command_id, outcome_event, outcome_routing_key, outcome_type
            FROM inbox WHERE merchant_id = $1 AND idempotency_key = $2
            """, [merchantId, key]).first.map { row in
            Stored(requestHash: try row.string("request_hash"), commandId: try row.string("command_id"),
                   outcomeEvent: try row.optionalString("outcome_event"),
                   outcomeRoutingKey: try row.optionalString("outcome_routing_key"),
                   outcomeType: try row.optionalString("outcome_type"))
        }
    }

    /// Writes the outcome events to the outbox and the first one to the inbox row. The rows are
    /// leased to this process (`Outbox.append`): each statement returns its row's `id`.
    static func recordOutcome(merchantId: String, key: String, events: [OutboxRow], at time: Date) -> [PostgresStatement] {
        let outcome = events[0]
        return [PostgresStatement("""
            WITH recorded AS (
                UPDATE inbox SET outcome_type = $3, outcome_routing_key = $4, outcome_event = $5
                WHERE merchant_id = $1 AND idempotency_key = $2)
            INSERT INTO outbox (event_id, event_type, exchange, routing_key, resource_key, correlation_id, body, created_at, lease_until)
            VALUES ($6, $3, $7, $4, $8, $9, $5, $10::timestamptz, now() + interval '\(Outbox.lease)')
            RETURNING id
            """, [merchantId, key, outcome.eventType, outcome.routingKey, outcome.body, outcome.eventId, outcome.exchange,
                  outcome.resourceKey, outcome.correlationId, time])] + events.dropFirst().map { Outbox.append($0, at: time, leased: true) }
    }
}

/// One event waiting in the transactional outbox.
struct OutboxRow: Sendable {
    var id: Int64 = 0
    let eventId: String
    let eventType: String
    let exchange: String
    let routingKey: String
    let resourceKey: String
    let correlationId: String?
    let body: String
}

/// The transactional outbox: events written with their effect, published by `OutboxRelay` after commit.
public enum Outbox {
    /// The statement that puts `event` in the outbox; run it in the transaction of the change it
    /// reports (for changes made outside a command handler, such as an admin's tier change).
    public static func statement(for event: Event, eventId: String, source: String, correlationId: String? = nil,
                                 at time: Date) throws -> PostgresStatement {
        let body = try event.render(eventId, source, Timestamp.format(time), event.merchantId, nil)
        return append(OutboxRow(eventId: eventId, eventType: event.type, exchange: Exchanges.events, routingKey: event.routingKey,
                                resourceKey: event.resourceKey, correlationId: correlationId, body: body), at: time)
    }

    /// Event ids are unique in the outbox (a second row with one id is an error), except where the
    /// caller says a repeat is expected (`ignoringDuplicate`: a rejection of a redelivered message).
    /// A `leased` row is the writing process's to publish (`OutboxRelay.publishCommitted`): other
    /// relays keep off it for `lease`, and take it over after that if this process died. The
    /// statement returns the row's `id`.
    static func append(_ row: OutboxRow, at time: Date, ignoringDuplicate: Bool = false, leased: Bool = false) -> PostgresStatement {
        PostgresStatement("""
            INSERT INTO outbox (event_id, event_type, exchange, routing_key, resource_key, correlation_id, body, created_at, lease_until)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::timestamptz, \(leased ? "now() + interval '\(lease)'" : "NULL"))
            """ + (ignoringDuplicate ? " ON CONFLICT (event_id) DO NOTHING" : "") + " RETURNING id",
            [row.eventId, row.eventType, row.exchange, row.routingKey, row.resourceKey, row.correlationId, row.body, time])
    }

    /// How long a row is left to the relay that holds it (it claimed it, or its process wrote it);
    /// past that (the relay died or hung), any relay takes it. Longer than a confirm may take.
    static let lease = "15 seconds"
}
