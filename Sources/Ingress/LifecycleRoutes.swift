import AMQP
import Contract
import Crypto
import Fleet
import Foundation
import HTTPTypes
import Hummingbird
import Payments
import Postgres
import Store

/// Pre-authorizations, captures, cancels, refunds, and the channels' asynchronous results
/// (CONTRACT §4). Commands go through `commandRoute` like payments do; the channels' `notify`
/// is signed instead of authenticated.
extension IngressApp {
    func addLifecycleRoutes(to router: Router<IngressContext>) {
        let api = router.group("api/v1")
        api.post("merchant/pre-auth") { request, _ in try await self.createPreAuth(request) }
        api.post("merchant/pre-auth/capture") { request, _ in try await self.capture(request) }
        api.post("merchant/pre-auth/cancel") { request, _ in try await self.cancel(request) }
        api.get("merchant/pre-auth/:pre_auth_no") { request, context in
            try await self.getPreAuth(request, number: try context.parameters.require("pre_auth_no"))
        }
        api.get("merchant/pre-auths") { request, _ in try await self.listPreAuths(request) }
        api.post("payments/:payment_no/refunds") { request, context in
            try await self.refund(request, paymentNo: try context.parameters.require("payment_no"))
        }
        api.post("channels/:channel/notify") { request, context in
            try await self.notify(request, channel: try context.parameters.require("channel"))
        }
    }

    func createPreAuth(_ request: Request) async throws -> Response {
        try await commandRoute(request, route: "POST /api/v1/merchant/pre-auth", type: "preauth.create", parse: PreAuthRequest.parse) {
            merchant, key, preAuth in
            let number = Identifiers.preAuthNo(merchantId: merchant.merchantId, idempotencyKey: key)
            let now = Date()
            let processing = PreAuthorization(preAuthNo: number, merchantId: merchant.merchantId, orderNo: preAuth.payment.orderNo,
                                              amount: preAuth.payment.amount, currency: preAuth.payment.currency, channel: nil,
                                              status: .processing, expiresAt: now.addingTimeInterval(TimeInterval(preAuth.expiresInSeconds)),
                                              version: 0, createdAt: now, updatedAt: now)
            return Self.json(.accepted, try CanonicalJSON.encode(processing), location: "/api/v1/merchant/pre-auth/\(number)")
        }
    }

    /// Answers with the payment the capture created (its `pre_auth_no` links it).
    func capture(_ request: Request) async throws -> Response {
        try await commandRoute(request, route: "POST /api/v1/merchant/pre-auth/capture", type: "preauth.capture", parse: CaptureRequest.parse) {
            merchant, key, capture in
            let paymentNo = Identifiers.capturePaymentNo(merchantId: merchant.merchantId, captureKey: key)
            return Self.json(.accepted, try CanonicalJSON.encode(["payment_no": paymentNo, "pre_auth_no": capture.preAuthNo,
                                                                  "status": "processing"]),
                             location: "/api/v1/payments/\(paymentNo)")
        }
    }

    func cancel(_ request: Request) async throws -> Response {
        try await commandRoute(request, route: "POST /api/v1/merchant/pre-auth/cancel", type: "preauth.cancel", parse: CancelRequest.parse) {
            _, _, cancel in
            Self.json(.accepted, try CanonicalJSON.encode(["pre_auth_no": cancel.preAuthNo, "status": "processing"]),
                      location: "/api/v1/merchant/pre-auth/\(cancel.preAuthNo)")
        }
    }

    /// The body is `{"amount"?, "reason"?}`; the payment is the path's. Answers with the refunded payment.
    func refund(_ request: Request, paymentNo: String) async throws -> Response {
        var request = request
        guard case .object(var fields) = try await readJSON(&request) else {
            throw Problem.invalid(ValidationFailure([FieldError("$", "must be a JSON object")]))
        }
        if fields["payment_no"] != nil {
            throw Problem.invalid(ValidationFailure([FieldError("payment_no", "is the path's; leave it out of the body")]))
        }
        fields["payment_no"] = .string(paymentNo)
        return try await commandRoute(request, route: "POST /api/v1/payments/{payment_no}/refunds", type: "payment.refund",
                                      body: .object(fields), parse: RefundRequest.parse) { _, _, refund in
            Self.json(.accepted, try CanonicalJSON.encode(["payment_no": refund.paymentNo, "status": "processing"]),
                      location: "/api/v1/payments/\(refund.paymentNo)")
        }
    }

    func getPreAuth(_ request: Request, number: String) async throws -> Response {
        let merchant = try await authenticate(request)
        guard let stored = try await pool.withConnection({
            try await PreAuthStore().load(preAuthNo: number, merchantId: merchant.merchantId, on: $0)
        }) else {
            throw Problem(.notFound, "not_found", "no pre-authorization \(TextRules.forLog(number, limit: 64))")
        }
        return Self.json(.ok, try CanonicalJSON.encode(stored.preAuth)).response
    }

    /// `?status=&limit=&cursor=`: `{"data": [...], "next_cursor": ...}`, newest first.
    func listPreAuths(_ request: Request) async throws -> Response {
        let merchant = try await authenticate(request)
        let query = request.uri.queryParameters
        var errors: [FieldError] = []
        var status: PreAuthStatus?
        if let text = query["status"].map(String.init) {
            status = PreAuthStatus(rawValue: text)
            if status == nil {
                errors.append(FieldError("status", "must be one of \(PreAuthStatus.allCases.map(\.rawValue).joined(separator: ", "))"))
            }
        }
        var limit = 20
        if let text = query["limit"].map(String.init) {
            if let value = Int(text), (1...100).contains(value) { limit = value } else { errors.append(FieldError("limit", "must be 1...100")) }
        }
        guard errors.isEmpty else { throw Problem.invalid(ValidationFailure(errors)) }
        let cursor = query["cursor"].map(String.init)
        let page: Page<PreAuthorization>
        do {
            page = try await pool.withConnection {
                try await PreAuthStore().list(merchantId: merchant.merchantId, status: status, cursor: cursor, limit: limit, on: $0)
            }
        } catch is PreAuthStore.InvalidCursor {
            throw Problem.invalid(ValidationFailure([FieldError("cursor", "is not a cursor this list handed out")]))
        }
        struct List: Encodable {
            let data: [PreAuthorization]
            let nextCursor: String?
            enum CodingKeys: String, CodingKey { case data, nextCursor = "next_cursor" }
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(data, forKey: .data)
                try container.encode(nextCursor, forKey: .nextCursor)
            }
        }
        return Self.json(.ok, try CanonicalJSON.encode(List(data: page.items, nextCursor: page.nextCursor))).response
    }

    /// A channel's asynchronous result, signed with HMAC-SHA256 over the raw body
    /// (`X-Channel-Signature: sha256=<hex>`). A missing or bad signature gets 401 and changes
    /// nothing. A good one is kept raw in `payment_callbacks`, then becomes `payment.complete`
    /// for the payment's merchant, under a key derived from the body: the same notify twice is
    /// one command. Answers 200 once the broker confirmed the command (503 if it did not: the
    /// channel should send it again).
    func notify(_ request: Request, channel: String) async throws -> Response {
        guard let channelSecret else {
            throw Problem(.serviceUnavailable, "notify_not_configured", "no channel secret is configured (PAYFLEET_CHANNEL_SECRET)")
        }
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: Self.maxBodyBytes)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw Problem(.contentTooLarge, "body_too_large", "the body is over \(Self.maxBodyBytes / 1024) KiB")
        }
        let body = Array(buffer.readableBytesView)
        guard let header = request.headers[HTTPField.Name("X-Channel-Signature")!], header.hasPrefix("sha256="),
              let signature = Self.hexBytes(header.dropFirst(7)),
              HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: body, using: SymmetricKey(data: channelSecret)) else {
            throw Problem(.unauthorized, "invalid_signature", "X-Channel-Signature must be sha256=<hex HMAC-SHA256 of the raw body>")
        }
        let json: JSONValue
        do { json = try JSONDecoder().decode(JSONValue.self, from: Data(body)) } catch {
            throw Problem(.badRequest, "invalid_request", "the body is not valid JSON", errors: [FieldError("$", "malformed JSON")])
        }
        let result: CompleteRequest
        switch CompleteRequest.parse(json) {
        case .success(let value): result = value
        case .failure(let failure): throw Problem.invalid(failure)
        }
        guard let owner = try await pool.withConnection({ try await self.payments.owner(paymentNo: result.paymentNo, on: $0) }),
              owner.channel == channel else {
            throw Problem(.notFound, "not_found", "no payment \(result.paymentNo) at channel \(TextRules.forLog(channel, limit: 32))")
        }
        try await pool.withConnection {
            try await CallbackStore.insert(channel: channel, paymentNo: result.paymentNo, body: String(decoding: body, as: UTF8.self), on: $0)
        }
        let key = "notify:" + MessageIds.sha256Hex(String(decoding: body, as: UTF8.self)).prefix(40)
        let command = CloudEvent(id: MessageIds.newCommandId(), type: "payment.complete", source: "/payfleet/ingress/notify/\(channel)",
                                 time: Timestamp.format(Date()), merchantId: owner.merchantId, idempotencyKey: key,
                                 traceparent: Self.traceparent(request), data: result)
        _ = try await send(command, respondAsync: true, accepted: Self.json(.ok, #"{"received":true}"#))
        return Self.json(.ok, try CanonicalJSON.encode(["received": "true", "payment_no": result.paymentNo])).response
    }

    /// Lowercase or uppercase hex to bytes; nil if it is not hex.
    static func hexBytes(_ text: Substring) -> [UInt8]? {
        guard text.count % 2 == 0, text.count <= 128 else { return nil }
        var bytes: [UInt8] = [], high: UInt8?
        for character in text {
            guard let digit = character.hexDigitValue else { return nil }
            if let first = high { bytes.append(first << 4 | UInt8(digit)); high = nil } else { high = UInt8(digit) }
        }
        return bytes
    }
}
