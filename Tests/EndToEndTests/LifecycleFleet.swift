import AMQP
import Contract
import Crypto
import Foundation
import PayFleetTesting
import Payments
import Postgres
import Store

/// A running fleet for the payment lifecycle: the ingress (with a channel secret) and the
/// authorize, capture, timeout and expire workers, all in sandbox mode (sweeps take `now`).
struct LifecycleFleet {
    static let adminToken = "test-admin-token-0123456789"
    static let channelSecret = "test-channel-secret-0123456789"

    let processes: [String: FleetProcess]
    let ports: [String: Int]
    let base: String
    let broker: AMQPConnection

    /// Starts the ingress and one of each worker in `workers` (all by default).
    static func start(workers: [String] = ["authorize", "capture", "timeout", "expire"], extra: [String: [String: String]] = [:]) async throws -> LifecycleFleet {
        var processes: [String: FleetProcess] = [:], ports: [String: Int] = [:]
        let httpPort = FleetProcess.freePort()
        processes["ingress"] = try FleetProcess("payfleet-ingress", environment: [
            "PAYFLEET_HTTP_PORT": "\(httpPort)", "PAYFLEET_ADMIN_TOKEN": adminToken, "PAYFLEET_CHANNEL_SECRET": channelSecret,
            // The tests read each outcome from the reply: wait for it as long as a loaded CI
            // machine may need, rather than get a 202 now and then.
            "PAYFLEET_REPLY_TIMEOUT_MS": "30000",
        ])
        ports["ingress"] = httpPort
        for worker in workers {
            let port = FleetProcess.freePort()
            processes[worker] = try FleetProcess("payfleet-\(worker)", environment: [
                "PAYFLEET_HEALTH_PORT": "\(port)", "PAYFLEET_SANDBOX": "1", "PAYFLEET_LIMIT_SYNC_INTERVAL": "0",
            ].merging(extra[worker] ?? [:]) { _, new in new })
            ports[worker] = port
        }
        for (name, process) in processes { try await process.waitUntilReady(port: ports[name]!) }
        return LifecycleFleet(processes: processes, ports: ports, base: "http://127.0.0.1:\(httpPort)",
                              broker: try await TestEnvironment.amqp("lifecycle upstream"))
    }

    subscript(_ name: String) -> FleetProcess { processes[name]! }

    func stop() async {
        for process in processes.values { process.stop() }
        await broker.close()
    }

    static func json(_ object: Any) -> Data { try! JSONSerialization.data(withJSONObject: object) }

    /// A new merchant through the admin API: (merchant_id, api_key).
    func merchant(tier: String, currency: String = "USD") async throws -> (id: String, key: String) {
        let reply = try await HTTP.post(base + "/api/v1/admin/merchants",
                                        headers: ["Authorization": "Bearer \(Self.adminToken)", "Content-Type": "application/json"],
                                        body: Self.json(["name": "Lifecycle", "tier": tier, "base_currency": currency, "country": "US"]))
        let merchant = reply.json["merchant"] as? [String: Any]
        return (merchant?["merchant_id"] as? String ?? "", reply.json["api_key"] as? String ?? "")
    }

    func post(_ apiKey: String, _ path: String, _ body: [String: Any], key: String = UUID().uuidString) async throws -> HTTP.Reply {
        try await HTTP.post(base + path, headers: ["Authorization": "Bearer \(apiKey)", "Content-Type": "application/json",
                                                   "Idempotency-Key": key], body: Self.json(body))
    }

    func get(_ apiKey: String, _ path: String) async throws -> HTTP.Reply {
        try await HTTP.get(base + path, headers: ["Authorization": "Bearer \(apiKey)"])
    }

    func pay(_ apiKey: String, amount: Int) async throws -> HTTP.Reply {
        try await post(apiKey, "/api/v1/payments", ["order_no": "o-\(UUID().uuidString)", "amount": amount, "currency": "USD",
                                                   "country": "US", "pay_method": "card"])
    }

    func preAuth(_ apiKey: String, amount: Int, expiresIn: Int? = nil) async throws -> HTTP.Reply {
        var body: [String: Any] = ["order_no": "room-\(UUID().uuidString)", "amount": amount, "currency": "USD", "country": "US",
                                   "pay_method": "card"]
        if let expiresIn { body["expires_in_seconds"] = expiresIn }
        return try await post(apiKey, "/api/v1/merchant/pre-auth", body)
    }

    /// What the merchant's limits have used today.
    func usedToday(_ apiKey: String) async throws -> Int {
        (try await get(apiKey, "/api/v1/merchant/limits").json["daily"] as? [String: Any])?["used"] as? Int ?? -1
    }

    /// A channel's notify, signed with `secret` (nil: no signature header at all).
    func notify(channel: String, _ body: [String: Any], secret: String? = LifecycleFleet.channelSecret) async throws -> HTTP.Reply {
        let data = Self.json(body)
        var headers = ["Content-Type": "application/json"]
        if let secret {
            let mac = HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: Array(secret.utf8)))
            headers["X-Channel-Signature"] = "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
        }
        return try await HTTP.post(base + "/api/v1/channels/\(channel)/notify", headers: headers, body: data)
    }

    /// A sweep moved in time (a test clock), confined to one merchant, published like an upstream would.
    func sweep(_ type: String, merchantId: String, now: Date) async throws -> String {
        let id = MessageIds.newCommandId()
        let command = CloudEvent(id: id, type: type, source: "/test/clock", time: nil, merchantId: merchantId,
                                 data: ["now": Timestamp.format(now)])
        try await Fixtures.publishAll([try Fixtures.message(command)], on: broker)
        return id
    }
}
