import Foundation
import Payments
import Postgres

/// Every channel's sandbox, behaving like a real PSP behind `ChannelAdapter`:
/// - it remembers each call by (channel, idempotency key) in its own table, written on its own
///   connection outside any command's transaction (as a PSP's database would be: a rollback here
///   does not erase it), and counts how often each key was called;
/// - a repeated key gets the first answer and moves nothing again;
/// - what a call does follows `SandboxChannel.behaviour` (the amount's last two digits); a call
///   that "did not answer" (`54`) took effect, and `status` says so;
/// - an optional latency and failure rate simulate a real channel (a simulated failure happens
///   before the call takes effect, so it is not remembered).
public struct SandboxChannels: ChannelAdapter {
    let pool: PostgresPool
    let latency: Duration
    let failureRate: Double

    public init(pool: PostgresPool, latency: Duration = .zero, failureRate: Double = 0) {
        self.pool = pool
        self.latency = latency
        self.failureRate = failureRate
    }

    public func call(_ request: ChannelRequest) async throws -> ChannelAnswer {
        if latency > .zero { try await Task.sleep(for: latency) }
        if failureRate > 0, Double.random(in: 0..<1) < failureRate { return .transientError("simulated channel failure") }
        let behaviour = SandboxChannel.behaviour(of: request.operation, amount: request.amount)
        // What the PSP records: a call that got no answer went through all the same.
        let recorded: SandboxChannel.Behaviour = behaviour == .noAnswer ? .succeed : behaviour
        let reference = SandboxChannel.reference(channel: request.channel, request: request)
        let row = try await pool.query("""
            INSERT INTO sandbox_channel_calls (channel, idempotency_key, operation, resource, amount, currency, answer, reference)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (channel, idempotency_key) DO UPDATE SET calls = sandbox_channel_calls.calls + 1, last_at = now()
            RETURNING answer, reference, (xmax = 0) AS inserted
            """, [request.channel, request.idempotencyKey, request.operation.rawValue, request.resource, request.amount,
                  request.currency.rawValue, recorded.rawValue, reference]).rows[0]
        let first = try row.bool("inserted")
        if first, behaviour == .noAnswer { return .noAnswer }
        let answer = SandboxChannel.Behaviour(rawValue: try row.string("answer")) ?? .transient
        let stored = try row.optionalString("reference") ?? reference
        switch answer {
        case .succeed, .noAnswer: return .succeeded(reference: stored)
        case .pend: return .pending(reference: stored)
        case .decline: return .declined(reason: "\(request.channel) declined the \(request.operation.rawValue)")
        case .transient: return .transientError("\(request.channel) had a transient error")
        }
    }

    public func status(channel: String, idempotencyKey: String) async throws -> ChannelStatus {
        guard let row = try await pool.query("""
            SELECT answer, reference FROM sandbox_channel_calls WHERE channel = $1 AND idempotency_key = $2
            """, [channel, idempotencyKey]).first else { return .unknown }
        switch SandboxChannel.Behaviour(rawValue: try row.string("answer")) {
        case .succeed?, .noAnswer?: return .succeeded(reference: try row.optionalString("reference") ?? "")
        case .pend?: return .pending
        case .decline?, .transient?, nil: return .failed
        }
    }

    /// How often each key was called on `channel` (tests count a command's calls this way).
    public func calls(channel: String, idempotencyKey: String) async throws -> Int {
        try await pool.query("SELECT calls FROM sandbox_channel_calls WHERE channel = $1 AND idempotency_key = $2",
                             [channel, idempotencyKey]).first?.int("calls") ?? 0
    }
}
