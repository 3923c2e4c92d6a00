import Contract
import Foundation
import Hummingbird

/// An RFC 9457 `application/problem+json` error with PayFleet's `code` (CONTRACT §4).
public struct Problem: HTTPResponseError, Sendable {
    public let status: HTTPResponse.Status
    public let code: String
    public let detail: String
    public var errors: [FieldError] = []
    /// The failed resource, on 402/403 for a declined payment.
    public var payment: JSONValue? = nil
    /// The failed resource, on 402/403 for a refused pre-authorization.
    public var preAuthorization: JSONValue? = nil
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ code: String, _ detail: String, errors: [FieldError] = [],
                payment: JSONValue? = nil) {
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.payment = payment
    }

    struct Body: Encodable {
        let type: String
        let title: String
        let status: Int
        let code: String
        let detail: String
        let errors: [FieldError]?
        let payment: JSONValue?
        let preAuthorization: JSONValue?
        enum CodingKeys: String, CodingKey {
            case type, title, status, code, detail, errors, payment, preAuthorization = "pre_authorization"
        }
    }

    public var body: String {
        let body = Body(type: "https://payfleet.dev/problems/\(code)", title: status.reasonPhrase, status: status.code,
                        code: code, detail: detail, errors: errors.isEmpty ? nil : errors, payment: payment,
                        preAuthorization: preAuthorization)
        return (try? CanonicalJSON.encode(body)) ?? #"{"code":"internal_error"}"#
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    static func invalid(_ failure: ValidationFailure) -> Problem {
        Problem(.badRequest, "invalid_request", failure.summary, errors: failure.errors)
    }
}
