import AMQP
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A client of RabbitMQ's management HTTP API, for the few calls that make broker users: a user,
/// its permissions on a vhost, its topic permissions. Each call has a deadline; an answer other
/// than 2xx is an error carrying the broker's words.
public struct RabbitManagement: Sendable {
    public let baseURL: URL
    let authorization: String
    let timeout: TimeInterval

    /// `url` is the API's root (`http://127.0.0.1:15672`); the credentials are the AMQP URL's unless
    /// `url` carries its own.
    public init(url: String, credentials: AMQPURL, timeout: TimeInterval = 10) throws {
        guard var components = URLComponents(string: url), let scheme = components.scheme, ["http", "https"].contains(scheme),
              components.host != nil else {
            throw ManagementError.invalidURL(url)
        }
        let user = components.user.map { $0.removingPercentEncoding ?? $0 } ?? credentials.user
        let password = components.password.map { $0.removingPercentEncoding ?? $0 } ?? credentials.password
        components.user = nil
        components.password = nil
        components.path = components.path.hasSuffix("/") ? String(components.path.dropLast()) : components.path
        guard let base = components.url else { throw ManagementError.invalidURL(url) }
        self.baseURL = base
        self.authorization = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        self.timeout = timeout
    }

    public enum ManagementError: Error, CustomStringConvertible {
        case invalidURL(String)
        case unreachable(String)
        case refused(status: Int, body: String)

        public var description: String {
            switch self {
            case .invalidURL(let url): "not a management API URL (http[s]://host:port): \(url)"
            case .unreachable(let reason): "the RabbitMQ management API cannot be reached: \(reason)"
            case .refused(let status, let body): "the RabbitMQ management API answered \(status): \(body.prefix(300))"
            }
        }
    }

    public func putUser(_ name: String, password: String) async throws {
        try await put("/api/users/\(Self.segment(name))", ["password": password, "tags": ""])
    }

    public func deleteUser(_ name: String) async throws {
        try await send("DELETE", "/api/users/\(Self.segment(name))", body: nil)
    }

    public func putPermissions(user: String, vhost: String, configure: String, write: String, read: String) async throws {
        try await put("/api/permissions/\(Self.segment(vhost))/\(Self.segment(user))",
                      ["configure": configure, "write": write, "read": read])
    }

    public func putTopicPermissions(user: String, vhost: String, exchange: String, write: String, read: String) async throws {
        try await put("/api/topic-permissions/\(Self.segment(vhost))/\(Self.segment(user))",
                      ["exchange": exchange, "write": write, "read": read])
    }

    private func put(_ path: String, _ body: [String: String]) async throws {
        try await send("PUT", path, body: try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]))
    }

    private func send(_ method: String, _ path: String, body: Data?) async throws {
        guard let url = URL(string: baseURL.absoluteString + path) else { throw ManagementError.invalidURL(path) }
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = method
        request.setValue(authorization, forHTTPHeaderField: "Authorization")
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = body
        }
        let data: Data, response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw ManagementError.unreachable("\(error)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            throw ManagementError.refused(status: status, body: String(decoding: data, as: UTF8.self))
        }
    }

    /// A path segment: everything but unreserved characters percent-encoded (`/` as the vhost is `%2F`).
    static func segment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: CharacterSet(charactersIn:
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")) ?? text
    }
}
