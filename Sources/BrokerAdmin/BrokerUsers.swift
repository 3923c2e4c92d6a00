import AMQP
import Contract
import Crypto
import Foundation
import Postgres

/// Makes broker users for upstream systems (CONTRACT §1, §4 `broker-credentials`), through
/// RabbitMQ's management API, and registers them in `broker_users`, where workers look up what a
/// command's `user_id` may do.
///
/// What a user may do, by RabbitMQ's own permissions:
/// - write: `payfleet.commands`, and its own queues (`<username>.…`, for binding them);
/// - read: `payfleet.events`, and its own queues; a merchant's user reads only `m.<merchant>.#`
///   there (a topic permission);
/// - configure: its own queues only.
/// The user is made first, then registered: a user that exists but is not registered is refused by
/// every worker (`forbidden`), never trusted. The password is shown once and never stored.
public struct BrokerUsers: Sendable {
    public let management: RabbitManagement
    /// The vhost and address handed out in `amqp_url`.
    public let publicURL: AMQPURL
    let pool: PostgresPool

    public init(management: RabbitManagement, publicURL: AMQPURL, pool: PostgresPool) {
        self.management = management
        self.publicURL = publicURL
        self.pool = pool
    }

    /// From the settings the ingress and the CLI share: the fleet's own broker URL (its vhost, and
    /// the management API's credentials unless `managementURL` has its own), the management API,
    /// and the address handed out (empty: the fleet's own).
    public init(amqpURL: AMQPURL, managementURL: String, publicAMQPURL: String, pool: PostgresPool) throws {
        var publicURL = publicAMQPURL.isEmpty ? amqpURL : try AMQPURL(publicAMQPURL)
        publicURL.vhost = amqpURL.vhost
        self.init(management: try RabbitManagement(url: managementURL, credentials: amqpURL), publicURL: publicURL, pool: pool)
    }

    /// What is shown once.
    public struct Credentials: Codable, Sendable {
        public let username: String
        public let password: String
        public let amqpURL: String
        enum CodingKeys: String, CodingKey { case username, password, amqpURL = "amqp_url" }
    }

    /// A new user acting for `merchantId`, or for every merchant when nil (`--internal`).
    public func create(merchantId: String?, createdBy: String) async throws -> Credentials {
        let username = Self.username(merchantId: merchantId)
        let password = Self.randomToken(bytes: 24)
        let user = Self.regexEscaped(username)
        let vhost = publicURL.vhost
        try await management.putUser(username, password: password)
        do {
            try await management.putPermissions(user: username, vhost: vhost, configure: "^\(user)\\..*",
                                                write: "^(payfleet\\.commands|\(user)\\..*)$",
                                                read: "^(payfleet\\.events|\(user)\\..*)$")
            let events = merchantId.map { "^m\\.\(Self.regexEscaped($0))\\..*" } ?? "^(m|sys)\\..*"
            try await management.putTopicPermissions(user: username, vhost: vhost, exchange: "payfleet.events", write: "^$", read: events)
            _ = try await pool.query("INSERT INTO broker_users (username, merchant_id, created_by) VALUES ($1, $2, $3)",
                                     [username, merchantId, createdBy])
        } catch {
            try? await management.deleteUser(username)
            throw error
        }
        var url = publicURL
        url.user = username
        url.password = password
        return Credentials(username: username, password: password, amqpURL: url.uriWithPassword)
    }

    /// `m-<merchant>-<random>` or `internal-<random>`: no dots, so `<username>.` prefixes only the
    /// user's own queues.
    static func username(merchantId: String?) -> String {
        let suffix = randomToken(bytes: 6).lowercased().filter { $0.isLetter || $0.isNumber }.prefix(8)
        return merchantId.map { "m-\($0)-\(suffix)" } ?? "internal-\(suffix)"
    }

    static func randomToken(bytes count: Int) -> String {
        let key = SymmetricKey(size: SymmetricKeySize(bitCount: count * 8))
        return key.withUnsafeBytes { Data($0) }.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func regexEscaped(_ text: String) -> String {
        NSRegularExpression.escapedPattern(for: text)
    }
}
