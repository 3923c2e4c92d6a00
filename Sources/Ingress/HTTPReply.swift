import Contract
import Foundation
import HTTPTypes
import Hummingbird
import Payments

/// A response as plain values, so that it can be stored for `Idempotency-Key` replays and sent.
public struct HTTPReply: Sendable, Equatable {
    public var status: Int
    public var headers: [String: String]
    public var body: String

    public var response: Response {
        var fields = HTTPFields()
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) {
            if let field = HTTPField.Name(name) { fields[field] = value }
        }
        return Response(status: .init(code: status), headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

extension Problem {
    var reply: HTTPReply {
        var headers = ["Content-Type": "application/problem+json"]
        for field in self.headers { headers[field.name.canonicalName] = field.value }
        return HTTPReply(status: status.code, headers: headers, body: body)
    }
}

/// Maps a command's outcome event to the HTTP answer of CONTRACT §4.
public enum OutcomeResponse {
    /// 201 with the resource (a payment or a pre-authorization); 402 (403 for `tier_forbidden`)
    /// with the failed resource; for a rejection 400, 404 (`not_found`), 422 (`invalid_state`,
    /// `idempotency_key_reused`) or 402 (the channel refused a capture or refund).
    public static func make(fromEvent body: [UInt8]) throws -> HTTPReply {
        // Only the fields the answer depends on are decoded; the resource is passed on as the
        // event's text has it (canonical JSON, as the worker wrote it): decoding it into
        // `JSONValue` and encoding it again was a quarter of the ingress's CPU.
        let event = try JSONDecoder().decode(CloudEvent<ResourceFields>.self, from: Data(body))
        func fullData() throws -> JSONValue { try JSONDecoder().decode(CloudEvent<JSONValue>.self, from: Data(body)).data }
        switch event.type {
        case EventRouting.commandRejected:
            let rejection = try JSONDecoder().decode(CloudEvent<CommandRejection>.self, from: Data(body)).data
            let status: HTTPResponse.Status = switch rejection.code {
            case "idempotency_key_reused", "invalid_state": .unprocessableContent
            case "tier_forbidden": .forbidden
            case "merchant_not_found", "not_found": .notFound
            case "channel_declined", "channel_error": .init(code: 402)
            default: .badRequest
            }
            // Field paths in events start at the envelope; in HTTP they start at the body.
            let errors = rejection.errors.map { FieldError($0.field.hasPrefix("data.") ? String($0.field.dropFirst(5)) : $0.field, $0.message) }
            return Problem(status, rejection.code, rejection.message, errors: errors).reply
        default:
            guard let resource = event.data.fields else { throw OutcomeError.notAResource(event.type) }
            let location: String? = if case .string(let number)? = resource["payment_no"] {
                "/api/v1/payments/\(number)"
            } else if case .string(let number)? = resource["pre_auth_no"] {
                "/api/v1/merchant/pre-auth/\(number)"
            } else { nil }
            if case .string(let status)? = resource["status"], status == PaymentStatus.failed.rawValue {
                let data = try fullData()
                let code: String = if case .string(let code)? = resource["failure_code"] { code } else { "declined" }
                let detail: String = if case .string(let text)? = resource["failure_message"] { text } else { "it failed" }
                var problem = Problem(code == FailureCode.tierForbidden.rawValue ? .forbidden : .init(code: 402), code, detail)
                if case .string? = resource["payment_no"] { problem.payment = data } else { problem.preAuthorization = data }
                return problem.reply
            }
            let data = if let range = JSONMember.range(of: "data", in: body) {
                String(decoding: body[range], as: UTF8.self)
            } else {
                try CanonicalJSON.encode(try fullData())
            }
            var headers = ["Content-Type": "application/json"]
            if let location { headers["Location"] = location }
            return HTTPReply(status: 201, headers: headers, body: data)
        }
    }

    /// The members of an outcome's resource that decide the answer; nil `fields` when the event's
    /// data is not an object.
    struct ResourceFields: Codable, Sendable {
        var fields: [String: JSONValue]?

        enum Key: String, CodingKey, CaseIterable {
            case paymentNo = "payment_no", preAuthNo = "pre_auth_no", status, failureCode = "failure_code"
            case failureMessage = "failure_message"
        }

        init(from decoder: any Decoder) throws {
            guard let container = try? decoder.container(keyedBy: Key.self) else { return }
            var fields: [String: JSONValue] = [:]
            for key in Key.allCases {
                if let value = try container.decodeIfPresent(JSONValue.self, forKey: key) { fields[key.rawValue] = value }
            }
            self.fields = fields
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(fields)
        }
    }

    enum OutcomeError: Error { case notAResource(String) }
}
