import AMQP
import Contract
import Foundation
import Metrics
import Postgres
import Synchronization

/// What a broker user may do (CONTRACT §1): act for every merchant, or for one.
public enum PublisherGrant: Sendable, Equatable {
    /// The fleet's own user and users made with `--internal`: every merchant, and system commands.
    case everyMerchant
    /// A merchant integration's user: that merchant's commands only.
    case merchant(String)
}

/// Who is registered to publish commands. The fleet's own users are not in it (see `PublisherPolicy`).
public protocol PublisherDirectory: Sendable {
    /// The grant of broker user `user`, or nil for a user nobody registered.
    func grant(forUser user: String) async throws -> PublisherGrant?
}

/// The broker users registered in PostgreSQL (`broker_users`, written by the ingress and the CLI
/// when they create a user through RabbitMQ's management API).
public struct BrokerUserDirectory: PublisherDirectory {
    let pool: PostgresPool

    public init(pool: PostgresPool) { self.pool = pool }

    public func grant(forUser user: String) async throws -> PublisherGrant? {
        let rows = try await pool.query("SELECT merchant_id FROM broker_users WHERE username = $1", [user]).rows
        guard let row = rows.first else { return nil }
        return try row.optionalString("merchant_id").map(PublisherGrant.merchant) ?? .everyMerchant
    }
}

/// Decides, from what the broker vouches for, who sent a command and what it may do:
/// - the sender is the AMQP `user_id`, which RabbitMQ checks against the connection's user. A
///   command without one is forbidden (else a merchant's user could leave it out and pass as
///   internal). When the fleet itself sends a command on (a retry, a parked message replayed), it
///   publishes as itself and names the original sender in `x-payfleet-publisher`, which is
///   believed only from the fleet's own users;
/// - a merchant's user acts for its merchant only, and never sends system commands;
/// - an outcome goes to `reply_to` only when that is direct reply-to or a queue the sender owns
///   (`<user>.` prefix), never to one of the fleet's own queues.
/// Grants are cached for `cacheTTL`; a lookup that fails is not cached (the command is retried).
public final class PublisherPolicy: Sendable {
    public static let directReplyTo = "amq.rabbitmq.reply-to"

    let fleetUsers: Set<String>
    let directory: (any PublisherDirectory)?
    let reservedQueues: Set<String>
    let cacheTTL: Duration
    private let cache = Mutex<[String: (grant: PublisherGrant?, until: ContinuousClock.Instant)]>([:])
    let refusedReplies = Counter(label: "payfleet_reply_to_refused_total")

    /// - fleetUsers: the broker users the fleet's own processes connect as (internal).
    /// - directory: the other users; nil trusts no one else.
    /// - reservedQueues: queues no reply may go to (the topology's).
    public init(fleetUsers: Set<String>, directory: (any PublisherDirectory)?, reservedQueues: Set<String> = [],
                cacheTTL: Duration = .seconds(30)) {
        self.fleetUsers = fleetUsers
        self.directory = directory
        self.reservedQueues = reservedQueues
        self.cacheTTL = cacheTTL
    }

    /// The user a delivery speaks for, or nil when it carries no `user_id`.
    public func sender(of properties: AMQPProperties) -> String? {
        guard let user = properties.userId, !user.isEmpty else { return nil }
        if fleetUsers.contains(user), case .string(let original)? = properties.headers[FleetHeaders.publisher], !original.isEmpty {
            return original
        }
        return user
    }

    /// The properties the fleet re-publishes a delivery with (retry, parking, replay): its own
    /// connection stamps `user_id`, and the original sender travels in `x-payfleet-publisher`.
    public func republishing(_ properties: AMQPProperties) -> AMQPProperties {
        var properties = properties
        if let sender = sender(of: properties) { properties.headers[FleetHeaders.publisher] = .string(sender) }
        properties.userId = nil
        return properties
    }

    /// What came of checking a command's sender.
    public enum Verdict: Sendable, Equatable {
        case allowed(PublisherGrant)
        /// `forbidden`, with the reason, and the merchant whose stream the rejection goes to (the
        /// sender's own; nil: `sys`).
        case forbidden(String, notify: String?)
    }

    /// May `sender` send a command for `merchantId` (empty for a system command without one)?
    /// `merchantsMay` is false for command types only internal publishers send.
    public func authorize(sender: String?, merchantId: String, merchantsMay: Bool) async throws -> Verdict {
        guard let sender else {
            return .forbidden("the command carries no AMQP user_id: publish with user_id set to your broker user", notify: nil)
        }
        guard let grant = try await grant(for: sender) else {
            return .forbidden("broker user \(TextRules.forLog(sender, limit: 64)) is not registered with PayFleet", notify: nil)
        }
        switch grant {
        case .everyMerchant:
            return .allowed(grant)
        case .merchant(let own):
            guard merchantsMay else {
                return .forbidden("broker user \(sender) may not send this command type", notify: own)
            }
            guard merchantId == own else {
                return .forbidden("broker user \(sender) acts for merchant \(own) only", notify: own)
            }
            return .allowed(grant)
        }
    }

    func grant(for user: String) async throws -> PublisherGrant? {
        if fleetUsers.contains(user) { return .everyMerchant }
        let now = ContinuousClock.now
        if let cached = cache.withLock({ $0[user] }), cached.until > now { return cached.grant }
        guard let directory else { return nil }
        let grant = try await directory.grant(forUser: user)
        cache.withLock { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[user] = (grant, now + cacheTTL)
        }
        return grant
    }

    /// Where the outcome of a command with `replyTo` from `sender` may go; nil (and counted) when
    /// it may not.
    public func replyTarget(_ replyTo: String?, sender: String?) -> String? {
        guard let replyTo, !replyTo.isEmpty else { return nil }
        if replyTo == Self.directReplyTo || replyTo.hasPrefix(Self.directReplyTo + ".") { return replyTo }
        if let sender, replyTo.hasPrefix(sender + "."), !reservedQueues.contains(replyTo) { return replyTo }
        refusedReplies.increment()
        return nil
    }
}
