import Contract
import Fleet
import Foundation
import Hummingbird
import HTTPTypes
import Logging
import Postgres
import Redis
import Synchronization

/// Every answer of the ingress is a documented one (CONTRACT §4):
/// - an unknown route gets problem+json 404 (`not_found`); a known path with another method 405
///   (`method_not_allowed`) with `Allow`;
/// - a store that is away (Redis, or PostgreSQL's connection, a statement or lock timeout) gets 503
///   (`service_unavailable`) with `Retry-After`, not a 500: nothing was done, retry;
/// - any other unexpected error gets problem+json 500 (`internal_error`) and is logged.
struct EdgeMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: RouteCatalog
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && error.body == nil {
            let allowed = routes.methods(for: request.uri.path)
            guard !allowed.isEmpty else {
                throw Problem(.notFound, "not_found", "no route \(TextRules.forLog(request.uri.path, limit: 200))")
            }
            var problem = Problem(.methodNotAllowed, "method_not_allowed",
                                  "\(request.method.rawValue) is not allowed here; allowed: \(allowed.joined(separator: ", "))")
            problem.headers[.allow] = allowed.joined(separator: ", ")
            throw problem
        } catch let error as any HTTPResponseError {
            throw error
        } catch {
            if Self.isUnavailable(error) {
                logger.warning("a store is unavailable", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
                var problem = Problem(.serviceUnavailable, "service_unavailable",
                                      "a backing store is unavailable; nothing was done, retry later")
                problem.headers[.retryAfter] = "5"
                throw problem
            }
            logger.error("unexpected error", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            throw Problem(.internalServerError, "internal_error", "an unexpected error; it was logged")
        }
    }

    /// Any Redis error, a store outage (`StoreOutage`), or a statement that timed out.
    static func isUnavailable(_ error: any Error) -> Bool {
        error is RedisError || StoreOutage.matches(error) || (error as? PostgresError)?.sqlState == "57014"
    }
}

/// The routes the router registered (paths as `/api/v1/payments/{payment_no}`), filled once the
/// router is built; answers which methods a path has.
final class RouteCatalog: Sendable {
    private let routes = Mutex<[(segments: [Substring], method: String)]>([])

    func set(_ described: [(path: String, method: String)]) {
        routes.withLock { $0 = described.map { ($0.path.split(separator: "/"), $0.method) } }
    }

    /// The methods of the routes the router would pick for `path`. Like the router's trie, a
    /// literal segment wins over a parameter (`/orders/batch` is not `/orders/{order_no}`).
    func methods(for path: String) -> [String] {
        let segments = path.split(separator: "/")
        let matching = routes.withLock { routes in
            routes.compactMap { route -> (literal: [Bool], method: String)? in
                guard route.segments.count == segments.count,
                      zip(route.segments, segments).allSatisfy({ pattern, segment in pattern.hasPrefix("{") || pattern == segment }) else {
                    return nil
                }
                return (route.segments.map { !$0.hasPrefix("{") }, route.method)
            }
        }
        guard let best = matching.map(\.literal).max(by: { $0.lexicographicallyPrecedes($1) { !$0 && $1 } }) else { return [] }
        return Array(Set(matching.filter { $0.literal == best }.map(\.method))).sorted()
    }
}

/// Unauthenticated traffic is limited per client address: after `limit` answers of 401 within a
/// minute of its first, an address gets 429 (`rate_limited`, `Retry-After`) until that minute is
/// over, without a key lookup. Counted in this process (each replica limits what reaches it).
struct UnauthenticatedLimitMiddleware: RouterMiddleware {
    typealias Context = IngressContext
    let limit: Int
    let windows = FailureWindows()

    func handle(_ request: Request, context: IngressContext, next: (Request, IngressContext) async throws -> Response) async throws -> Response {
        let address = context.remoteAddress?.ipAddress ?? "unknown"
        if let retryAfter = windows.blocked(address, limit: limit) {
            var problem = Problem(.tooManyRequests, "rate_limited",
                                  "too many unauthenticated requests from this address; retry in \(retryAfter) s")
            problem.headers[.retryAfter] = "\(retryAfter)"
            throw problem
        }
        do {
            let response = try await next(request, context)
            if response.status == .unauthorized { windows.count(address) }
            return response
        } catch let problem as Problem where problem.status == .unauthorized {
            windows.count(address)
            throw problem
        }
    }

    /// Per address, a minute that starts at its first failure.
    final class FailureWindows: Sendable {
        private let windows = Mutex<[String: (start: ContinuousClock.Instant, failures: Int)]>([:])

        func count(_ address: String) {
            windows.withLock { windows in
                let now = ContinuousClock.now
                if windows.count >= 100_000 { windows = windows.filter { now - $0.value.start < .seconds(60) } }
                if let window = windows[address], now - window.start < .seconds(60) {
                    windows[address]!.failures += 1
                } else {
                    windows[address] = (now, 1)
                }
            }
        }

        /// Seconds until the address may try again, or nil when it may now.
        func blocked(_ address: String, limit: Int) -> Int? {
            windows.withLock { windows in
                guard let window = windows[address], window.failures >= limit else { return nil }
                let left = .seconds(60) - (ContinuousClock.now - window.start)
                guard left > .zero else { return nil }
                return max(1, Int(left.components.seconds) + 1)
            }
        }
    }
}

/// A set whose members are forgotten after `ttl`, holding at most `capacity` (then it starts over).
final class ExpiringSet: Sendable {
    let ttl: Duration
    let capacity: Int
    private let members = Mutex<[String: ContinuousClock.Instant]>([:])

    init(ttl: Duration, capacity: Int) {
        self.ttl = ttl
        self.capacity = capacity
    }

    func contains(_ member: String) -> Bool {
        members.withLock { members in
            guard let until = members[member] else { return false }
            if until > .now { return true }
            members[member] = nil
            return false
        }
    }

    func insert(_ member: String) {
        members.withLock { members in
            if members.count >= capacity { members.removeAll() }
            members[member] = .now + ttl
        }
    }
}
