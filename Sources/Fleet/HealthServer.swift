import AMQP
import Hummingbird
import Logging
import Postgres
import Redis
import ServiceLifecycle

/// What `/readyz` checks: each dependency the process needs, by name.
public struct ReadinessCheck: Sendable {
    public let name: String
    public let check: @Sendable () async -> Bool
    public init(name: String, check: @escaping @Sendable () async -> Bool) {
        self.name = name
        self.check = check
    }

    public static func amqp(_ name: String, _ connection: AMQPConnection) -> ReadinessCheck {
        ReadinessCheck(name: name) { connection.isConnected }
    }

    public static func postgres(_ pool: PostgresPool) -> ReadinessCheck {
        ReadinessCheck(name: "database") { (try? await pool.query("SELECT 1", [])) != nil }
    }

    public static func redis(_ client: RedisClient) -> ReadinessCheck {
        ReadinessCheck(name: "cache") { (try? await client.command(["PING"])) != nil }
    }

    /// Runs every check; the JSON body lists each result.
    public static func evaluate(_ checks: [ReadinessCheck]) async -> (ready: Bool, body: String) {
        var results: [(String, Bool)] = []
        for check in checks { results.append((check.name, await check.check())) }
        let ready = results.allSatisfy(\.1)
        let fields = results.map { "\"\($0.0)\":\"\($0.1 ? "ok" : "unavailable")\"" }.joined(separator: ",")
        return (ready, "{\"status\":\"\(ready ? "ready" : "not_ready")\",\"checks\":{\(fields)}}")
    }
}

/// Adds `/healthz` (alive), `/readyz` (dependencies reachable) and `/metrics` (Prometheus) to a router.
public enum HealthRoutes {
    public static func add<Context: RequestContext>(to router: Router<Context>, checks: [ReadinessCheck]) {
        router.get("healthz") { _, _ in jsonResponse(.ok, "{\"status\":\"ok\"}") }
        router.get("readyz") { _, _ in
            let (ready, body) = await ReadinessCheck.evaluate(checks)
            return jsonResponse(ready ? .ok : .serviceUnavailable, body)
        }
        router.get("metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: FleetMetrics.exposition())))
        }
    }

    static func jsonResponse(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    /// A small HTTP server holding only the health routes (workers).
    public static func server(host: String, port: Int, checks: [ReadinessCheck], logger: Logger) -> some Service {
        let router = Router()
        add(to: router, checks: checks)
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "payfleet-health"),
                           logger: logger)
    }
}
