import AMQP
import Fleet
import Testing

/// Who may publish what (CONTRACT §1), decided without a broker: a directory in memory.
@Suite struct PublisherPolicyTests {
    struct Directory: PublisherDirectory {
        let users: [String: PublisherGrant]
        func grant(forUser user: String) async throws -> PublisherGrant? { users[user] }
    }

    let policy = PublisherPolicy(fleetUsers: ["payfleet"],
                                 directory: Directory(users: ["m-a-1": .merchant("mch_a"), "internal-1": .everyMerchant]),
                                 reservedQueues: ["payfleet.capture", "payfleet.authorize"])

    @Test func aMerchantUserActsForItsMerchantOnly() async throws {
        #expect(try await policy.authorize(sender: "m-a-1", merchantId: "mch_a", merchantsMay: true) == .allowed(.merchant("mch_a")))
        let other = try await policy.authorize(sender: "m-a-1", merchantId: "mch_b", merchantsMay: true)
        #expect(other == .forbidden("broker user m-a-1 acts for merchant mch_a only", notify: "mch_a"),
                "the rejection goes to the sender's own stream, not the victim's")
        guard case .forbidden = try await policy.authorize(sender: "m-a-1", merchantId: "mch_a", merchantsMay: false) else {
            Issue.record("a merchant's user sent a command only the fleet may send")
            return
        }
    }

    @Test func internalUsersActForEveryMerchantAndUnknownOrMissingUsersForNone() async throws {
        #expect(try await policy.authorize(sender: "payfleet", merchantId: "mch_b", merchantsMay: false) == .allowed(.everyMerchant))
        #expect(try await policy.authorize(sender: "internal-1", merchantId: "mch_b", merchantsMay: true) == .allowed(.everyMerchant))
        guard case .forbidden(_, nil) = try await policy.authorize(sender: nil, merchantId: "mch_a", merchantsMay: true),
              case .forbidden(_, nil) = try await policy.authorize(sender: "stranger", merchantId: "mch_a", merchantsMay: true) else {
            Issue.record("a command without user_id, or from an unregistered user, was allowed")
            return
        }
    }

    @Test func theOriginalSenderIsBelievedOnlyFromTheFleet() {
        var properties = AMQPProperties(userId: "payfleet", headers: [FleetHeaders.publisher: .string("m-a-1")])
        #expect(policy.sender(of: properties) == "m-a-1", "a retry the fleet re-published speaks for its first sender")
        properties.userId = "m-a-1"
        properties.headers[FleetHeaders.publisher] = .string("payfleet")
        #expect(policy.sender(of: properties) == "m-a-1", "a merchant's user cannot claim to be the fleet")
        #expect(policy.sender(of: AMQPProperties()) == nil)
        let again = policy.republishing(AMQPProperties(userId: "m-a-1"))
        #expect(again.userId == nil && again.headers[FleetHeaders.publisher] == .string("m-a-1"))
    }

    @Test(arguments: [
        ("amq.rabbitmq.reply-to.g1h2AA", "m-a-1", true),
        ("m-a-1.replies", "m-a-1", true),
        ("m-b-2.replies", "m-a-1", false),
        ("m-a-1x.replies", "m-a-1", false),
        ("payfleet.capture", "m-a-1", false),
        ("payfleet.capture", "payfleet", false),
        ("payfleet.replies-1", "payfleet", true),
        ("amq.gen-abc", "payfleet", false),
    ])
    func repliesGoOnlyToDirectReplyToOrTheSendersOwnQueues(replyTo: String, sender: String, allowed: Bool) {
        #expect((policy.replyTarget(replyTo, sender: sender) != nil) == allowed)
    }
}
