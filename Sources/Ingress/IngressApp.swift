import AMQP
import BrokerAdmin
import Contract
import Crypto
import Fleet
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Payments
import Postgres
import Redis
import ServiceLifecycle
import Store

/// The HTTP ingress (CONTRACT §4): authenticates merchants, validates requests, publishes commands
/// with publisher confirms, and waits for their outcome through RabbitMQ direct reply-to.
///
/// It holds no payment state of its own: the worker decides, the ingress reports. A command is
/// accepted only once the broker confirmed it (else 503 and nothing happened).
public struct IngressApp: Sendable {
    let pool: PostgresPool
    let redis: RedisClient
    /// One for the process: its decoded entries are reused across requests.
    let merchantCache: MerchantCache
    let broker: AMQPConnection
    let replies: ReplyWaiter
    let relay: OutboxRelay
    let brokerUsers: BrokerUsers
    let adminTokenHash: [UInt8]
    /// The secret channels sign `notify` bodies with (HMAC-SHA256); nil when none is configured.
    let channelSecret: [UInt8]?
    let replyTimeout: Duration
    let logger: Logger
    /// API keys that matched no merchant lately: answered 401 without a lookup.
    let unknownKeys = ExpiringSet(ttl: .seconds(60), capacity: 50_000)
    let merchants = MerchantStore()
    let payments = PaymentStore()
    let idempotency = HTTPIdempotencyStore()

    public static let maxBodyBytes = 64 * 1024
    static let directReplyTo = "amq.rabbitmq.reply-to"

    /// Runs the ingress until SIGTERM/SIGINT.
    public static func run(options: IngressOptions) async throws {
        let logger = FleetLogging.bootstrap(level: options.connections.logLevel, label: "payfleet-ingress", format: options.connections.logFormat)
        FleetMetrics.bootstrap()
        let topology = try options.connections.topology()
        let pool = PostgresPool(configuration: try PostgresConfiguration(url: options.connections.databaseURL),
                                size: options.databasePoolSize, logger: logger)
        let redis = try RedisClient(url: options.connections.redisURL, poolSize: 2, logger: logger)
        let amqpURL = try AMQPURL(options.connections.amqpURL)
        let broker = AMQPConnection(configuration: AMQPConfiguration(
            url: amqpURL, connectionName: "payfleet-ingress", confirms: true,
            consumes: [ConsumeSpec(queue: directReplyTo, noAck: true)], topology: topology,
            confirmTimeout: .milliseconds(options.confirmTimeoutMilliseconds)), logger: logger)
        let brokerUsers = try BrokerUsers(amqpURL: amqpURL, managementURL: options.managementURL,
                                          publicAMQPURL: options.publicAMQPURL, pool: pool)
        let app = IngressApp(pool: pool, redis: redis, merchantCache: MerchantCache(redis: redis), broker: broker, replies: ReplyWaiter(),
                             relay: OutboxRelay(pool: pool, publisher: broker, logger: logger), brokerUsers: brokerUsers,
                             adminTokenHash: Array(SHA256.hash(data: Array(options.adminToken.utf8))),
                             channelSecret: options.channelSecret.isEmpty ? nil : Array(options.channelSecret.utf8),
                             replyTimeout: .milliseconds(options.replyTimeoutMilliseconds), logger: logger)

        let router = app.router(checks: [.amqp("broker", broker), .postgres(pool), .redis(redis)],
                                unauthenticatedPerMinute: options.unauthenticatedPerMinute)
        if options.printRoutes {
            for route in router.routes { print("\(route.method.rawValue) \(route.path)") }
            await broker.close()
            await redis.close()
            await pool.close()
            return
        }
        let server = Application(router: router,
                                 configuration: .init(address: .hostname(options.httpHost, port: options.httpPort),
                                                      serverName: "payfleet-ingress"),
                                 logger: logger)
        var configuration = ServiceGroupConfiguration(services: [.init(service: app.relay), .init(service: ReplyPump(app: app)),
                                                                 .init(service: server)],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = .seconds(15)
        if app.channelSecret == nil {
            logger.warning("no PAYFLEET_CHANNEL_SECRET: POST /api/v1/channels/{channel}/notify answers 503 until one is set")
        }
        logger.info("listening", metadata: ["address": "http://\(options.httpHost):\(options.httpPort)"])
        try await ServiceGroup(configuration: configuration).run()
        await broker.close()
        await redis.close()
        await pool.close()
    }

    /// Feeds direct reply-to deliveries to the waiting requests, until the graceful shutdown. It
    /// stops after the HTTP server (services stop in reverse order), so the requests in flight
    /// still get their answers; stopping then, not at the shutdown deadline, keeps the ingress's
    /// stop from taking the whole `maximumGracefulShutdownDuration` (it took 25 s when idle).
    struct ReplyPump: Service {
        let app: IngressApp
        func run() async throws {
            for await delivery in app.broker.deliveries.cancelOnGracefulShutdown() { app.replies.deliver(delivery) }
        }
    }

    /// Every route, behind the middlewares every answer passes: metrics, request logs, the edge
    /// (documented errors only), the unauthenticated limit, rate-limit headers.
    func router(checks: [ReadinessCheck], unauthenticatedPerMinute: Int) -> Router<IngressContext> {
        let router = Router(context: IngressContext.self)
        let catalog = RouteCatalog()
        router.middlewares.add(MetricsMiddleware())
        // Spans through swift-distributed-tracing: no-ops unless a tracer is bootstrapped.
        router.middlewares.add(TracingMiddleware())
        router.middlewares.add(LogRequestsMiddleware(.debug))
        router.middlewares.add(EdgeMiddleware(routes: catalog, logger: logger))
        router.middlewares.add(UnauthenticatedLimitMiddleware(limit: unauthenticatedPerMinute))
        router.middlewares.add(RateLimitHeadersMiddleware())
        addRoutes(to: router)
        addRulebookRoutes(to: router)
        addLifecycleRoutes(to: router)
        addMoneyOutRoutes(to: router)
        addBrokerRoutes(to: router)
        HealthRoutes.add(to: router, checks: checks)
        router.get("openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
        catalog.set(router.routes.map { ("\($0.path)", $0.method.rawValue) })
        return router
    }

    func addRoutes(to router: Router<IngressContext>) {
        let api = router.group("api/v1")
        api.post("admin/merchants") { request, context in try await self.createMerchant(request) }
        api.post("payments") { request, context in try await self.createPayment(request) }
        api.get("payments/:payment_no") { request, context in
            try await self.getPayment(request, paymentNo: try context.parameters.require("payment_no"))
        }
    }

    // MARK: - Routes

    func createMerchant(_ request: Request) async throws -> Response {
        try requireAdmin(request)
        var request = request
        let json = try await readJSON(&request)
        let new: NewMerchant
        switch NewMerchant.parse(json) {
        case .success(let value): new = value
        case .failure(let failure): throw Problem.invalid(failure)
        }
        let (merchant, apiKey) = try await pool.withConnection { try await self.merchants.create(new, on: $0) }
        logger.info("merchant created", metadata: ["merchant_id": "\(merchant.merchantId)", "tier": "\(merchant.tier.rawValue)"])
        struct Created: Encodable {
            let merchant: Merchant
            let apiKey: String
            enum CodingKeys: String, CodingKey { case merchant, apiKey = "api_key" }
        }
        return Self.json(.created, try CanonicalJSON.encode(Created(merchant: merchant, apiKey: apiKey))).response
    }

    func getPayment(_ request: Request, paymentNo: String) async throws -> Response {
        let merchant = try await authenticate(request)
        guard let payment = try await pool.withConnection({
            try await self.payments.find(paymentNo: paymentNo, merchantId: merchant.merchantId, on: $0)
        }) else {
            throw Problem(.notFound, "not_found", "no payment \(TextRules.forLog(paymentNo, limit: 64))")
        }
        return Self.json(.ok, try CanonicalJSON.encode(payment)).response
    }

    func createPayment(_ request: Request) async throws -> Response {
        try await commandRoute(request, route: "POST /api/v1/payments", type: "payment.create", parse: PaymentRequest.parse) { merchant, key, payment in
            let paymentNo = Identifiers.paymentNo(merchantId: merchant.merchantId, idempotencyKey: key)
            let processing = Payment(paymentNo: paymentNo, merchantId: merchant.merchantId, request: payment,
                                     status: .processing, version: 0, at: Date())
            return Self.json(.accepted, try CanonicalJSON.encode(processing), location: "/api/v1/payments/\(paymentNo)")
        }
    }

    /// What every route that causes a command does (CONTRACT §4): authenticate the merchant, read
    /// and validate the body, require an `Idempotency-Key`, and publish the command under that key
    /// at most once per key and payload; answer with its outcome, or `accepted` (202) when the
    /// outcome takes longer than the reply timeout (or `Prefer: respond-async`).
    func commandRoute<T: Codable & Sendable>(_ request: Request, route: String, type: String, body: JSONValue? = nil,
                                             parse: (JSONValue) -> Result<T, ValidationFailure>,
                                             accepted: @escaping @Sendable (Merchant, String, T) throws -> HTTPReply) async throws -> Response {
        let merchant = try await authenticate(request)
        var request = request
        let json: JSONValue
        if let body { json = body } else { json = try await readJSON(&request) }
        let key = try idempotencyKey(request)
        let payload: T
        switch parse(json) {
        case .success(let value): payload = value
        case .failure(let failure): throw Problem.invalid(failure)
        }
        let requestHash = MessageIds.sha256Hex("\(route)|\(try CanonicalJSON.encode(payload))")
        let traceparent = Self.traceparent(request)
        let respondAsync = Self.prefersAsync(request)
        return try await idempotent(merchantId: merchant.merchantId, key: key, requestHash: requestHash) {
            let command = CloudEvent(id: MessageIds.newCommandId(), type: type, source: "/payfleet/ingress",
                                     time: Timestamp.format(Date()), merchantId: merchant.merchantId, idempotencyKey: key,
                                     traceparent: traceparent, data: payload)
            return try await self.send(command, respondAsync: respondAsync, accepted: try accepted(merchant, key, payload))
        }
    }

    // MARK: - Commands

    /// Publishes a command with a confirm and waits for its outcome (unless `respondAsync`).
    /// 503 when the broker did not confirm; `accepted` (202) when the outcome did not come in time
    /// (made only then: most requests get their outcome).
    func send<T: Codable & Sendable>(_ command: CloudEvent<T>, respondAsync: Bool,
                                     accepted: @autoclosure () throws -> HTTPReply) async throws -> HTTPReply {
        let waitForReply = !respondAsync && replyTimeout > .zero
        if waitForReply { replies.expect(command.id) }
        let message = AMQPMessage(exchange: Exchanges.commands, routingKey: command.type, body: Array(try CanonicalJSON.encode(command).utf8),
                                  properties: AMQPProperties(contentType: CloudEvent<T>.contentType, persistent: true,
                                                             messageId: command.id, type: command.type,
                                                             replyTo: waitForReply ? Self.directReplyTo : nil, timestamp: Date(),
                                                             headers: command.traceparent.map { ["traceparent": .string($0)] } ?? [:]),
                                  mandatory: true)
        do {
            let outcome = try await broker.publish(message)
            guard outcome == .acked else { throw NotConfirmed(outcome: "\(outcome)") }
        } catch {
            replies.forget(command.id)
            logger.warning("command not confirmed by the broker", metadata: ["command": "\(command.id)", "error": "\(error)"])
            var problem = Problem(.serviceUnavailable, "broker_unavailable", "the command was not accepted; retry with the same Idempotency-Key")
            problem.headers[.retryAfter] = "1"
            throw problem
        }
        guard waitForReply, let reply = await replies.wait(for: command.id, timeout: replyTimeout) else { return try accepted() }
        return try OutcomeResponse.make(fromEvent: reply)
    }

    /// The broker answered a publish with something other than an ack (nack, or returned unroutable).
    struct NotConfirmed: Error { let outcome: String }

    /// Runs `body` at most once per (merchant, Idempotency-Key): replays the stored response,
    /// 409 while the first is in flight, 422 for another payload under the same key. A 5xx is not
    /// stored: nothing was accepted, so the client may retry with the same key.
    func idempotent(merchantId: String, key: String, requestHash: String,
                    _ body: @Sendable () async throws -> HTTPReply) async throws -> Response {
        let claim = try await pool.withConnection {
            try await self.idempotency.claim(merchantId: merchantId, key: key, requestHash: requestHash, on: $0)
        }
        switch claim {
        case .inFlight:
            throw Problem(.conflict, "idempotency_key_in_use", "a request with this Idempotency-Key is still in flight")
        case .mismatch:
            throw Problem(.unprocessableContent, "idempotency_key_reused", "this Idempotency-Key was used with another payload")
        case .replay(let stored):
            var reply = HTTPReply(status: stored.status, headers: stored.headers, body: stored.body)
            reply.headers["Idempotent-Replayed"] = "true"
            return reply.response
        case .claimed:
            break
        }
        let reply: HTTPReply
        do {
            reply = try await body()
        } catch let problem as Problem where problem.status.code < 500 {
            reply = problem.reply
        } catch {
            try? await pool.withConnection { try await self.idempotency.abandon(merchantId: merchantId, key: key, on: $0) }
            throw error
        }
        let stored = HTTPIdempotencyStore.StoredResponse(status: reply.status, headers: reply.headers, body: reply.body)
        try await pool.withConnection { try await self.idempotency.complete(merchantId: merchantId, key: key, response: stored, on: $0) }
        return reply.response
    }

    // MARK: - Request plumbing

    func authenticate(_ request: Request) async throws -> Merchant {
        guard let token = Self.bearerToken(request) else {
            throw Problem(.unauthorized, "unauthenticated", "send Authorization: Bearer <api key>")
        }
        let hash = MessageIds.sha256Hex(token)
        guard token.hasPrefix("sk_"), token.count < 200, !unknownKeys.contains(hash) else {
            throw Problem(.unauthorized, "unauthenticated", "unknown API key")
        }
        guard let merchant = try await merchantCache.merchant(apiKeyHash: hash, load: {
            try await self.pool.withConnection { try await self.merchants.authenticate(apiKey: token, on: $0) }
        }) else {
            unknownKeys.insert(hash)
            throw Problem(.unauthorized, "unauthenticated", "unknown API key")
        }
        let rate = try await RateLimiter(redis: redis).hit(merchantId: merchant.merchantId, perMinute: merchant.tier.policy.apiRequestsPerMinute)
        RateLimitHeaders.current?.headers.withLock { $0 = rate.headers }
        guard rate.allowed else {
            var problem = Problem(.tooManyRequests, "rate_limited",
                                  "the \(merchant.tier.rawValue) tier allows \(rate.limit) requests per minute; retry in \(rate.resetSeconds) s")
            for (name, value) in rate.headers { if let field = HTTPField.Name(name) { problem.headers[field] = value } }
            throw problem
        }
        return merchant
    }

    func requireAdmin(_ request: Request) throws {
        guard let token = Self.bearerToken(request) else {
            throw Problem(.unauthorized, "unauthenticated", "send Authorization: Bearer <admin token>")
        }
        // Compare hashes, so the comparison's time says nothing about the token.
        let given = Array(SHA256.hash(data: Array(token.utf8)))
        guard zip(given, adminTokenHash).reduce(0, { $0 | ($1.0 ^ $1.1) }) == 0 else {
            throw Problem(.forbidden, "forbidden", "this route needs the admin token")
        }
    }

    static func bearerToken(_ request: Request) -> String? { bearerToken(header: request.headers[.authorization]) }

    /// The token of an `Authorization: Bearer <token>` header: the scheme in any case, the token
    /// trimmed of spaces; nil without one.
    public static func bearerToken(header value: String?) -> String? {
        guard let value else { return nil }
        let bytes = value.utf8
        // Printable ASCII and tabs (every API key and admin token) are compared and trimmed byte by
        // byte: lowercasing the header and trimming through `NSString` were 1.8% of the ingress's CPU.
        if bytes.allSatisfy({ (0x20..<0x7F).contains($0) || $0 == 0x09 }) {
            guard bytes.count >= 7,
                  zip(bytes.prefix(7), "bearer ".utf8).allSatisfy({ ((0x41...0x5A).contains($0) ? $0 | 0x20 : $0) == $1 }) else {
                return nil
            }
            var token = bytes.dropFirst(7)
            while let first = token.first, first == 0x20 || first == 0x09 { token = token.dropFirst() }
            while let last = token.last, last == 0x20 || last == 0x09 { token = token.dropLast() }
            return token.isEmpty ? nil : String(decoding: token, as: UTF8.self)
        }
        guard value.lowercased().hasPrefix("bearer ") else { return nil }
        let token = value.dropFirst(7).trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    func idempotencyKey(_ request: Request) throws -> String {
        guard let key = request.headers[HTTPField.Name("Idempotency-Key")!], !key.isEmpty else {
            throw Problem(.badRequest, "idempotency_key_missing", "this route needs an Idempotency-Key header (1-255 characters)",
                          errors: [FieldError("Idempotency-Key", "is required")])
        }
        // An HTTP structured-field string: printable ASCII only (a header's other bytes have no
        // one reading).
        guard key.utf8.count <= 255, key.unicodeScalars.allSatisfy({ (0x20...0x7E).contains($0.value) }) else {
            throw Problem(.badRequest, "invalid_request", "Idempotency-Key must be 1-255 printable ASCII characters",
                          errors: [FieldError("Idempotency-Key", "must be 1-255 printable ASCII characters")])
        }
        return key
    }

    /// The request's W3C trace continued (a new span id), or a new trace: every command carries one
    /// into its events. A malformed header is ignored.
    static func traceparent(_ request: Request) -> String {
        request.headers[HTTPField.Name("traceparent")!].flatMap(TraceContext.valid).map(TraceContext.child) ?? TraceContext.new()
    }

    static func prefersAsync(_ request: Request) -> Bool {
        request.headers[values: HTTPField.Name("Prefer")!].contains { $0.lowercased().contains("respond-async") }
    }

    /// The body as JSON: 415 unless it says JSON, 413 over 64 KiB, 400 when it does not parse.
    func readJSON(_ request: inout Request) async throws -> JSONValue {
        let type = request.headers[.contentType]?.lowercased() ?? ""
        let mediaType = type.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json")) else {
            throw Problem(.unsupportedMediaType, "unsupported_media_type", "send Content-Type: application/json")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: Self.maxBodyBytes)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw Problem(.contentTooLarge, "body_too_large", "the body is over \(Self.maxBodyBytes / 1024) KiB")
        }
        guard !JSONDepth.exceeds(buffer.readableBytesView) else {
            throw Problem(.badRequest, "invalid_request", "the body nests deeper than \(JSONDepth.limit) levels",
                          errors: [FieldError("$", "nests deeper than \(JSONDepth.limit) levels")])
        }
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(buffer.readableBytesView))
        } catch {
            throw Problem(.badRequest, "invalid_request", "the body is not valid JSON", errors: [FieldError("$", "malformed JSON")])
        }
    }

    static func json(_ status: HTTPResponse.Status, _ body: String, location: String? = nil) -> HTTPReply {
        var headers = ["Content-Type": "application/json"]
        if let location { headers["Location"] = location }
        return HTTPReply(status: status.code, headers: headers, body: body)
    }
}

