import AMQP
import Contract
import Foundation
import Payments
import Postgres
import Store

/// Test data made through the real stores.
public enum Fixtures {
    /// A new merchant in the test database (schema applied first, idempotently).
    public static func merchant(_ pool: PostgresPool, tier: Tier = .premium, currency: Currency = .USD, country: String = "US",
                                overrides: LimitOverrides? = nil) async throws -> (merchant: Merchant, apiKey: String) {
        try await Migrations.apply(to: pool, logger: TestEnvironment.logger)
        return try await pool.withConnection { connection in
            var (merchant, apiKey) = try await MerchantStore().create(
                NewMerchant(name: TestEnvironment.unique("test merchant"), tier: tier, baseCurrency: currency, country: country,
                            autoSettlement: true), on: connection)
            if let overrides {
                _ = try await connection.query("UPDATE merchants SET limit_overrides = $2::jsonb WHERE merchant_id = $1",
                                               [merchant.merchantId, try CanonicalJSON.encode(overrides)])
                merchant.limitOverrides = overrides
            }
            return (merchant, apiKey)
        }
    }

    /// A premium USD merchant whose limits no test reaches.
    public static func unlimitedMerchant(_ pool: PostgresPool) async throws -> Merchant {
        try await merchant(pool, overrides: LimitOverrides(singleLimit: 1_000_000_000, dailyLimit: 1_000_000_000_000,
                                                           monthlyLimit: 1_000_000_000_000)).merchant
    }

    /// An amount that settles at once in the sandbox: never ending in 52 (pending), 53 (a transient
    /// error retried for minutes) or 54 (no answer: pending until the timeout sweep asks), so every
    /// command finishes and the limit counters equal the succeeded sum. Amounts ending in 51
    /// (declined) stay: their reservations must be released.
    public static func settlingAmount(_ base: Int64) -> Int64 {
        [52, 53, 54].contains(base % 100) ? base + 10 : base
    }

    /// How many payments a merchant has.
    public static func paymentCount(_ pool: PostgresPool, _ merchantId: String) async throws -> Int {
        try await pool.query("SELECT count(*) AS n FROM payments WHERE merchant_id = $1", [merchantId]).rows[0].int("n")
    }

    /// Forgets every channel's live outcomes and closes their circuits, so that a test asserting
    /// which channel a payment takes sees the configured rates (RULES: live outcomes of the last
    /// minute blend into the routing, so another test's traffic would move the choice).
    public static func resetChannelStats() async throws {
        let redis = try TestEnvironment.redis(poolSize: 1)
        let stats = ChannelStatsStore(redis: redis)
        for channel in RoutingConfig.defaults.channels.map(\.name) { try await stats.reset(channel) }
        await redis.close()
    }

    /// A `payment.create` command envelope.
    public static func paymentCommand(merchantId: String, amount: Int64, currency: Currency = .USD, country: String = "US",
                                      payMethod: PayMethod = .card, orderNo: String? = nil, id: String = MessageIds.newCommandId(),
                                      idempotencyKey: String? = nil) -> CloudEvent<PaymentRequest> {
        CloudEvent(id: id, type: "payment.create", source: "/test", time: Timestamp.format(Date()), merchantId: merchantId,
                   idempotencyKey: idempotencyKey,
                   // The whole id: two commands' orders must never be one (8 characters of 2,000
                   // random ids collided once: a payment found its order paid by another command).
                   data: PaymentRequest(orderNo: orderNo ?? "order-\(id)", amount: amount, currency: currency,
                                        country: country, payMethod: payMethod))
    }

    /// The AMQP message that carries a command, as an upstream system would publish it.
    public static func message<T: Codable & Sendable>(_ command: CloudEvent<T>, exchange: String = "payfleet.commands",
                                                      routingKey: String? = nil, replyTo: String? = nil) throws -> AMQPMessage {
        AMQPMessage(exchange: exchange, routingKey: routingKey ?? command.type, body: Array(try CanonicalJSON.encode(command).utf8),
                    properties: AMQPProperties(contentType: "application/cloudevents+json", persistent: true,
                                               messageId: command.id, type: command.type, replyTo: replyTo),
                    mandatory: true)
    }

    /// Publishes many messages pipelined and checks every confirm.
    public static func publishAll(_ messages: [AMQPMessage], on connection: AMQPConnection) async throws {
        try await withThrowingTaskGroup(of: PublishOutcome.self) { group in
            for message in messages { group.addTask { try await connection.publish(message) } }
            for try await outcome in group where outcome != .acked { throw FixtureError.notConfirmed("\(outcome)") }
        }
    }

    public enum FixtureError: Error { case notConfirmed(String) }
}
