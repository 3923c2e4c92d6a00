import AMQP
import Testing

@Suite struct AMQPURLTests {
    @Test func parsesEveryPart() throws {
        let url = try AMQPURL("amqp://payfleet:s%40cret@broker.local:5673/%2F")
        #expect(url.host == "broker.local")
        #expect(url.port == 5673)
        #expect(url.user == "payfleet")
        #expect(url.password == "s@cret")
        #expect(url.vhost == "/")
    }

    @Test func appliesDefaults() throws {
        let url = try AMQPURL("amqp://localhost")
        #expect(url == AMQPURL(host: "localhost", port: 5672, user: "guest", password: "guest", vhost: "/"))
        #expect(try AMQPURL("amqp://localhost/").vhost == "/")
        #expect(try AMQPURL("amqp://u:p@[::1]:5690/payments").host == "::1")
        #expect(try AMQPURL("amqp://u:p@[::1]:5690/payments").vhost == "payments")
    }

    @Test(arguments: ["http://localhost", "amqps://localhost", "amqp://", "amqp://host:99999", "amqp://host:x",
                      "amqp://host/%zz"])
    func rejectsMalformed(_ string: String) {
        #expect(throws: AMQPError.self) { try AMQPURL(string) }
    }

    @Test func descriptionHidesThePassword() throws {
        let url = try AMQPURL("amqp://u:topsecret@h:1/%2F")
        #expect(!url.description.contains("topsecret"))
        #expect(url.description == "amqp://u:***@h:1/%2F")
    }
}
