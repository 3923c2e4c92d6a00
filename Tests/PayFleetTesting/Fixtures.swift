import AMQP
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
                                               [merchant.merchantId, try StoreJSON.encode(overrides)])
                merchant.limitOverrides = overrides
            }
            return (merchant, apiKey)
        }
    }

    /// A `payment.create` command envelope.
    public static func paymentCommand(merchantId: String, amount: Int64, currency: Currency = .USD, country: String = "US",
                                      payMethod: PayMethod = .card, orderNo: String? = nil, id: String = Identifiers.newCommandId(),
                                      idempotencyKey: String? = nil) -> CloudEvent<PaymentRequest> {
        CloudEvent(id: id, type: "payment.create", source: "/test", time: Timestamp.format(Date()), merchantId: merchantId,
                   idempotencyKey: idempotencyKey,
                   data: PaymentRequest(orderNo: orderNo ?? "order-\(id.prefix(8))", amount: amount, currency: currency,
                                        country: country, payMethod: payMethod))
    }

    /// The AMQP message that carries a command, as an upstream system would publish it.
    public static func message<T: Codable & Sendable>(_ command: CloudEvent<T>, exchange: String = "payfleet.commands",
                                                      routingKey: String? = nil, replyTo: String? = nil) throws -> AMQPMessage {
        AMQPMessage(exchange: exchange, routingKey: routingKey ?? command.type, body: Array(try StoreJSON.encode(command).utf8),
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
