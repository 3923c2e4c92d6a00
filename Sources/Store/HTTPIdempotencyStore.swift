import Contract
import Postgres

/// `Idempotency-Key` records of the HTTP ingress (CONTRACT §4, IETF Idempotency-Key draft).
///
/// The first request with a key claims it (`in_flight`); a concurrent one gets `inFlight` (409);
/// a replay after completion gets the stored response; the same key with another payload gets
/// `mismatch` (422). A claim older than `abandonAfterSeconds` (its ingress died) may be taken over.
public struct HTTPIdempotencyStore: Sendable {
    public var abandonAfterSeconds = 60
    public init() {}

    public struct StoredResponse: Sendable, Equatable {
        public var status: Int
        public var headers: [String: String]
        public var body: String
        public init(status: Int, headers: [String: String], body: String) {
            self.status = status
            self.headers = headers
            self.body = body
        }
    }

    public enum Claim: Sendable, Equatable {
        case claimed
        case inFlight
        case mismatch
        case replay(StoredResponse)
    }

    public func claim(merchantId: String, key: String, requestHash: String, on connection: PostgresConnection) async throws -> Claim {
        let inserted = try await connection.query("""
            INSERT INTO http_idempotency (merchant_id, idempotency_key, request_hash, state) VALUES ($1, $2, $3, 'in_flight')
            ON CONFLICT (merchant_id, idempotency_key) DO UPDATE SET state = 'in_flight', request_hash = EXCLUDED.request_hash,
                created_at = now(), updated_at = now()
              WHERE http_idempotency.created_at < now() - interval '24 hours'
                 OR (http_idempotency.state = 'in_flight' AND http_idempotency.request_hash = EXCLUDED.request_hash
                     AND http_idempotency.updated_at < now() - make_interval(secs => $4))
            RETURNING 1
            """, [merchantId, key, requestHash, abandonAfterSeconds])
        if inserted.affectedRows == 1 { return .claimed }
        guard let row = try await connection.query("""
            SELECT request_hash, state, response_status, response_headers::text AS response_headers, response_body
            FROM http_idempotency WHERE merchant_id = $1 AND idempotency_key = $2
            """, [merchantId, key]).first else {
            return try await claim(merchantId: merchantId, key: key, requestHash: requestHash, on: connection)
        }
        if try row.string("request_hash") != requestHash { return .mismatch }
        if try row.string("state") == "in_flight" { return .inFlight }
        return .replay(StoredResponse(status: try row.int("response_status"),
                                      headers: try CanonicalJSON.decode([String: String].self, from: try row.string("response_headers")),
                                      body: try row.string("response_body")))
    }

    public func complete(merchantId: String, key: String, response: StoredResponse, on connection: PostgresConnection) async throws {
        _ = try await connection.query("""
            UPDATE http_idempotency SET state = 'done', response_status = $3, response_headers = $4::jsonb,
                response_body = $5, updated_at = now()
            WHERE merchant_id = $1 AND idempotency_key = $2
            """, [merchantId, key, response.status, try CanonicalJSON.encode(response.headers), response.body])
    }

    /// Forgets a claim whose request was not accepted (a 5xx): the client may retry with the same key.
    public func abandon(merchantId: String, key: String, on connection: PostgresConnection) async throws {
        _ = try await connection.query("DELETE FROM http_idempotency WHERE merchant_id = $1 AND idempotency_key = $2 AND state = 'in_flight'",
                                       [merchantId, key])
    }
}
