import Hummingbird
import HTTPTypes
import Synchronization

/// Carries the `RateLimit-*` headers from the authentication of a request to its response:
/// `authenticate` fills the box of the current request; the middleware copies it onto the response.
final class RateLimitHeaders: Sendable {
    @TaskLocal static var current: RateLimitHeaders?
    let headers = Mutex<[String: String]>([:])
}

/// Adds the headers that authentication recorded to every merchant response, errors included.
struct RateLimitHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let box = RateLimitHeaders()
        do {
            var response = try await RateLimitHeaders.$current.withValue(box) { try await next(request, context) }
            for (name, value) in box.headers.withLock({ $0 }) {
                if let field = HTTPField.Name(name) { response.headers[field] = value }
            }
            return response
        } catch var problem as Problem {
            // An error answer of an authenticated request carries them too.
            for (name, value) in box.headers.withLock({ $0 }) {
                if let field = HTTPField.Name(name), problem.headers[field] == nil { problem.headers[field] = value }
            }
            throw problem
        }
    }
}
