import Contract
import Foundation
import Payments
import Postgres

/// A pre-authorization as stored: the CONTRACT resource plus what the workers keep beside it.
public struct StoredPreAuth: Sendable, Equatable {
    public var preAuth: PreAuthorization
    /// What was asked for (country, pay method, subject, metadata: what its captures carry).
    public var request: PaymentRequest
    public var routing: RoutingDecision?
    /// The amount in the merchant's base currency, as its limits counted it.
    public var amountBase: Int64
    public var limitKey: String
    public var countedAt: Date
    public var channelRef: String?
    public var customer: Customer?
    public var expiresAt: Date
    public var createdAt: Date

    public init(preAuth: PreAuthorization, request: PaymentRequest, routing: RoutingDecision?, amountBase: Int64, limitKey: String,
                countedAt: Date, channelRef: String?, customer: Customer?, expiresAt: Date, createdAt: Date) {
        self.preAuth = preAuth
        self.request = request
        self.routing = routing
        self.amountBase = amountBase
        self.limitKey = limitKey
        self.countedAt = countedAt
        self.channelRef = channelRef
        self.customer = customer
        self.expiresAt = expiresAt
        self.createdAt = createdAt
    }

    /// The base-currency part of the captured amount (what of the reservation is committed).
    public var capturedBase: Int64 { BaseShare.of(preAuth.capturedAmount, in: preAuth.amount, base: amountBase) }
}

/// One page of a list, and the cursor of the next (nil at the end).
public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    public var nextCursor: String?
}

/// Pre-authorizations in PostgreSQL. Every change is one conditional update on the version read
/// (and, for a capture, on `expires_at` still ahead): of two racing changes exactly one wins.
public struct PreAuthStore: Sendable {
    public init() {}

    static let columns = """
        pre_auth_no, merchant_id, order_no, amount, amount_base, currency, country, pay_method, channel, channel_ref,
        routing::text AS routing, status, captured_amount, capture_count, released_amount, expires_at, failure_code,
        failure_message, subject, metadata::text AS metadata, customer::text AS customer, limit_key, counted_at, version,
        created_at, updated_at
        """

    public func insert(_ stored: StoredPreAuth, commandId: String) throws -> PostgresStatement {
        let p = stored.preAuth, r = stored.request
        return PostgresStatement("""
            INSERT INTO pre_authorizations (pre_auth_no, merchant_id, order_no, amount, amount_base, currency, country, pay_method,
                channel, channel_ref, routing, status, captured_amount, capture_count, released_amount, expires_at, failure_code,
                failure_message, subject, metadata, customer, command_id, limit_key, counted_at, version, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14, $15, $16::timestamptz, $17, $18, $19,
                $20::jsonb, $21::jsonb, $22, $23, $24::timestamptz, $25, $26::timestamptz, $26::timestamptz)
            """, [p.preAuthNo, p.merchantId, p.orderNo, p.amount, stored.amountBase, p.currency.rawValue, r.country,
                  r.payMethod.rawValue, p.channel, stored.channelRef, try stored.routing.map(CanonicalJSON.encode), p.status.rawValue,
                  p.capturedAmount, p.captureCount, p.releasedAmount, stored.expiresAt, p.failureCode, p.failureMessage, r.subject,
                  try CanonicalJSON.encode(r.metadata ?? [:]), try stored.customer.map(CanonicalJSON.encode), commandId,
                  stored.limitKey, stored.countedAt, p.version, stored.createdAt])
    }

    /// One pre-authorization of `merchantId`. `lock`: take the row for this transaction
    /// (`FOR UPDATE`), so that captures, cancel and expiry of one pre-authorization take turns.
    public func load(preAuthNo: String, merchantId: String, lock: Bool = false,
                     on connection: PostgresConnection) async throws -> StoredPreAuth? {
        try await connection.query("""
            SELECT \(Self.columns) FROM pre_authorizations WHERE pre_auth_no = $1 AND merchant_id = $2\(lock ? " FOR UPDATE" : "")
            """, [preAuthNo, merchantId]).first.map(Self.stored(from:))
    }

    /// A condition on time a change must still meet when it is written.
    public enum Deadline: Sendable {
        /// `expires_at > at`: a capture or cancel while the hold is alive.
        case unexpired(at: Date)
        /// `expires_at <= at`: the expiry of a hold that is due.
        case expired(at: Date)
    }

    /// Writes a change of `after`, read at version `after.preAuth.version - 1` with status `from`:
    /// one conditional update on status, version and `deadline`. Returns false, changing nothing,
    /// when another change won.
    public func update(_ after: StoredPreAuth, from status: PreAuthStatus, deadline: Deadline, at time: Date,
                       on connection: PostgresConnection) async throws -> Bool {
        let p = after.preAuth
        let (comparison, moment): (String, Date) = switch deadline {
        case .unexpired(let at): (">", at)
        case .expired(let at): ("<=", at)
        }
        return try await connection.query("""
            UPDATE pre_authorizations SET status = $3, captured_amount = $4, capture_count = $5, released_amount = $6,
                version = $7, updated_at = $8::timestamptz
            WHERE pre_auth_no = $1 AND merchant_id = $2 AND version = $7 - 1 AND status = $9
              AND expires_at \(comparison) $10::timestamptz
            """, [p.preAuthNo, p.merchantId, p.status.rawValue, p.capturedAmount, p.captureCount, p.releasedAmount, p.version,
                  time, status.rawValue, moment]).affectedRows == 1
    }

    /// Open pre-authorizations whose hold ended by `at` (the expiry sweep), by number after
    /// `after`, at most `limit`; of one merchant when `merchantId` is given.
    public func dueOpen(expiredBy at: Date, merchantId: String?, after: String?, limit: Int,
                        on connection: PostgresConnection) async throws -> [(preAuthNo: String, merchantId: String)] {
        try await connection.query("""
            SELECT pre_auth_no, merchant_id FROM pre_authorizations
            WHERE status IN ('authorized', 'partially_captured') AND expires_at <= $1::timestamptz
              AND ($2::text IS NULL OR merchant_id = $2) AND ($3::text IS NULL OR pre_auth_no > $3)
            ORDER BY pre_auth_no LIMIT $4
            """, [at, merchantId, after, limit]).rows.map { (try $0.string("pre_auth_no"), try $0.string("merchant_id")) }
    }

    /// A page of the merchant's pre-authorizations, newest first, optionally of one status.
    ///
    /// Keyset pagination on (created_at, pre_auth_no), both fixed at creation: the cursor names
    /// the last row served, and the next page starts strictly after it, so no row is skipped or
    /// served twice while rows are added (new rows are newer than any cursor).
    public func list(merchantId: String, status: PreAuthStatus?, cursor: String?, limit: Int,
                     on connection: PostgresConnection) async throws -> Page<PreAuthorization> {
        let position = try cursor.map(Self.decodeCursor)
        let rows = try await connection.query("""
            SELECT \(Self.columns) FROM pre_authorizations
            WHERE merchant_id = $1 AND ($2::text IS NULL OR status = $2)
              AND (created_at, pre_auth_no) < (COALESCE($3::timestamptz, 'infinity'), COALESCE($4::text, ''))
            ORDER BY created_at DESC, pre_auth_no DESC LIMIT $5
            """, [merchantId, status?.rawValue, position?.createdAt, position?.preAuthNo, limit + 1]).rows.map(Self.stored(from:))
        let page = Array(rows.prefix(limit))
        let next = rows.count > limit ? page.last.map { Self.encodeCursor(createdAt: $0.createdAt, preAuthNo: $0.preAuth.preAuthNo) } : nil
        return Page(items: page.map(\.preAuth), nextCursor: next)
    }

    /// An opaque cursor: base64url of "<microseconds since 1970>|<pre_auth_no>".
    static func encodeCursor(createdAt: Date, preAuthNo: String) -> String {
        let micros = Int64((createdAt.timeIntervalSince1970 * 1_000_000).rounded())
        return Data("\(micros)|\(preAuthNo)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func decodeCursor(_ cursor: String) throws -> (createdAt: Date, preAuthNo: String) {
        var text = cursor.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.count % 4 != 0 { text += "=" }
        guard cursor.count <= 200, let data = Data(base64Encoded: text), let decoded = String(data: data, encoding: .utf8),
              let bar = decoded.firstIndex(of: "|"), let micros = Int64(decoded[..<bar]) else {
            throw InvalidCursor()
        }
        return (Date(timeIntervalSince1970: Double(micros) / 1_000_000), String(decoded[decoded.index(after: bar)...]))
    }

    /// A cursor that this store did not hand out.
    public struct InvalidCursor: Error {}

    static func stored(from row: PostgresRow) throws -> StoredPreAuth {
        let number = try row.string("pre_auth_no")
        guard let currency = Currency(rawValue: try row.string("currency")),
              let payMethod = PayMethod(rawValue: try row.string("pay_method")),
              let status = PreAuthStatus(rawValue: try row.string("status")) else {
            throw StoreError.corrupt("pre-authorization \(number)")
        }
        let createdAt = try row.date("created_at"), expiresAt = try row.date("expires_at")
        let preAuth = PreAuthorization(
            preAuthNo: number, merchantId: try row.string("merchant_id"), orderNo: try row.string("order_no"),
            amount: try row.int64("amount"), currency: currency, channel: try row.optionalString("channel"), status: status,
            capturedAmount: try row.int64("captured_amount"), captureCount: try row.int("capture_count"),
            releasedAmount: try row.int64("released_amount"), expiresAt: expiresAt, failureCode: try row.optionalString("failure_code"),
            failureMessage: try row.optionalString("failure_message"), version: try row.int("version"), createdAt: createdAt,
            updatedAt: try row.date("updated_at"))
        let request = PaymentRequest(orderNo: preAuth.orderNo, amount: preAuth.amount, currency: currency,
                                     country: try row.string("country"), payMethod: payMethod, subject: try row.optionalString("subject"),
                                     metadata: try CanonicalJSON.decode([String: String].self, from: try row.string("metadata")))
        return StoredPreAuth(preAuth: preAuth, request: request,
                             routing: try row.optionalString("routing").map { try CanonicalJSON.decode(RoutingDecision.self, from: $0) },
                             amountBase: try row.int64("amount_base"), limitKey: try row.string("limit_key"),
                             countedAt: try row.date("counted_at"), channelRef: try row.optionalString("channel_ref"),
                             customer: try row.optionalString("customer").map { try CanonicalJSON.decode(Customer.self, from: $0) },
                             expiresAt: expiresAt, createdAt: createdAt)
    }
}

/// The decisions of a command's first attempt that every retry and redelivery must repeat
/// (`command_pins`): the routing decision, the amount reserved and the time whose limit windows
/// count it. Written on its own connection, outside the command's transaction, so a rollback
/// keeps it: once a channel may have been called, the command never moves to another channel.
public struct CommandPins: Sendable {
    let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    public struct Pin: Sendable, Equatable {
        public var requestHash: String
        public var decision: RoutingDecision?
        public var amountBase: Int64
        public var countedAt: Date
        /// True when this call wrote it (the first attempt); false when an earlier attempt had.
        public var isNew: Bool
        /// `decision` as `CanonicalJSON` text, when this call wrote it: what the payment's row
        /// stores too, so it is encoded once (nil on a later attempt: PostgreSQL's jsonb text is not canonical).
        public var decisionText: String?

        public init(requestHash: String, decision: RoutingDecision?, amountBase: Int64, countedAt: Date, isNew: Bool,
                    decisionText: String? = nil) {
            self.requestHash = requestHash
            self.decision = decision
            self.amountBase = amountBase
            self.countedAt = countedAt
            self.isNew = isNew
            self.decisionText = decisionText
        }
    }

    /// Pins `proposed` for the command unless an earlier attempt pinned something: returns what
    /// is pinned now, in one round trip.
    public func pin(merchantId: String, key: String, proposed: Pin) async throws -> Pin {
        let text = try proposed.decision.map(CanonicalJSON.encode)
        let row = try await pool.query("""
            INSERT INTO command_pins (merchant_id, idempotency_key, request_hash, decision, amount_base, counted_at)
            VALUES ($1, $2, $3, $4::jsonb, $5, $6::timestamptz)
            ON CONFLICT (merchant_id, idempotency_key) DO UPDATE SET merchant_id = command_pins.merchant_id
            RETURNING request_hash, CASE WHEN xmax = 0 THEN NULL ELSE decision::text END AS decision, amount_base, counted_at,
                      (xmax = 0) AS inserted
            """, [merchantId, key, proposed.requestHash, text, proposed.amountBase,
                  proposed.countedAt]).rows[0]
        // A pin this call wrote holds the proposed decision: it is not read back (decoding it was
        // 3% of the authorize worker's CPU). The time is read back either way, as stored (to the
        // microsecond), so the first attempt and its retries count in the very same windows.
        let isNew = try row.bool("inserted")
        return Pin(requestHash: try row.string("request_hash"),
                   decision: isNew ? proposed.decision
                       : try row.optionalString("decision").map { try CanonicalJSON.decode(RoutingDecision.self, from: $0) },
                   amountBase: try row.int64("amount_base"), countedAt: try row.date("counted_at"), isNew: isNew,
                   decisionText: isNew ? text : nil)
    }

    /// Whether an earlier attempt of the command pinned its decisions (and so may have called a channel).
    public func exists(merchantId: String, key: String) async throws -> Bool {
        try await pool.query("SELECT 1 FROM command_pins WHERE merchant_id = $1 AND idempotency_key = $2", [merchantId, key]).first != nil
    }
}
