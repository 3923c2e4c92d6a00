import Foundation
import Logging
import Metrics
import Postgres
import Synchronization

/// How a worker groups commands' transactions (`GroupCommitter`).
public struct GroupCommitSettings: Sendable {
    /// At most this many commands share one transaction; 1 turns grouping off (one transaction
    /// per command, as before). Kept well under PostgreSQL's 64 cached subtransactions per
    /// backend, past which every snapshot in the server gets slower.
    public var maxMembers: Int
    /// How long a group that is not full waits for company before it starts; 0 (the default)
    /// never waits: a group is whatever was ready, so an idle queue pays no latency for it.
    public var wait: Duration
    /// Once a group has run this long, the members it has not run yet go back to wait for the
    /// next group: a slow member (a channel that takes its time) does not hold the others.
    public var budget: Duration
    /// Transactions that run at once, at least; more start while a full group is waiting, up to
    /// `maxRunners`.
    public var runners: Int
    public var maxRunners: Int

    public static let maxMembersLimit = 50

    public init(maxMembers: Int = 16, wait: Duration = .zero, budget: Duration = .milliseconds(25), runners: Int = 8, maxRunners: Int = 32) {
        self.maxMembers = max(1, min(maxMembers, Self.maxMembersLimit))
        self.wait = wait
        self.budget = budget
        self.runners = max(1, runners)
        self.maxRunners = max(self.runners, maxRunners)
    }

    /// One transaction per command.
    public static let off = GroupCommitSettings(maxMembers: 1)
}

/// Group commit: runs the transactions of jobs that are ready together as one PostgreSQL
/// transaction, each job in its own savepoint, so that one job's failure or decision to roll back
/// undoes only its own part.
///
/// - A group is formed from the jobs waiting when a runner is free (at most `maxMembers`). Under
///   load, jobs gather while the running groups commit; on an idle queue a job starts at once, alone.
/// - Every lock the members need (`locks`) is taken at the start of the transaction, deduplicated
///   and in one fixed order (the statements' text), so that two groups never wait on each other in
///   opposite orders: the merchants' limit locks of overlapping groups cannot deadlock.
/// - Each member runs in `SAVEPOINT member … RELEASE SAVEPOINT member`; an error rolls back to the
///   savepoint and is handed to that member after the commit.
/// - Results are handed out only after `COMMIT`. If the group fails as a whole (a lost connection,
///   a deadlock with a row lock, a failed `COMMIT`), nothing of it committed, or, for a connection
///   lost during `COMMIT`, perhaps all of it: every member then runs again alone (`alone`), where
///   the inbox tells a done job from a new one.
/// - A job alone (a group of one, or grouping off) runs through `alone`: no savepoint.
///
/// It knows nothing of commands: the worker gives it `locks`, `member` and `alone`.
final class GroupCommitter<Job: Sendable, Value: Sendable>: Sendable {
    /// Runs one job's part inside an open transaction: `opening` go first in the same round trip
    /// as its first statements, `closing` after its writes.
    typealias Member = @Sendable (_ job: Job, _ tx: PostgresConnection, _ opening: [PostgresStatement],
                                  _ closing: [PostgresStatement]) async throws -> Value

    private struct Waiting: Sendable {
        let job: Job
        let continuation: CheckedContinuation<Value, any Error>
    }

    private struct State: ~Copyable {
        var pending: [Waiting] = []
        var runners = 0
    }

    let settings: GroupCommitSettings
    private let pool: PostgresPool
    private let locks: @Sendable (Job) -> [PostgresStatement]
    private let member: Member
    private let alone: @Sendable (Job) async throws -> Value
    private let logger: Logger
    private let state = Mutex(State())
    private let groups: Metrics.Counter
    private let members: Metrics.Counter
    private let cutShort: Metrics.Counter
    private let fallbacks: Metrics.Counter

    static var savepoint: PostgresStatement { .simple("SAVEPOINT member") }
    static var release: PostgresStatement { .simple("RELEASE SAVEPOINT member") }
    static var rollbackToSavepoint: PostgresStatement { .simple("ROLLBACK TO SAVEPOINT member") }

    init(settings: GroupCommitSettings, pool: PostgresPool, queue: String, logger: Logger,
         locks: @escaping @Sendable (Job) -> [PostgresStatement], member: @escaping Member,
         alone: @escaping @Sendable (Job) async throws -> Value) {
        self.settings = settings
        self.pool = pool
        self.locks = locks
        self.member = member
        self.alone = alone
        self.logger = logger
        let dimensions = [("queue", queue)]
        groups = Metrics.Counter(label: "payfleet_group_commits_total", dimensions: dimensions)
        members = Metrics.Counter(label: "payfleet_group_commit_members_total", dimensions: dimensions)
        cutShort = Metrics.Counter(label: "payfleet_group_commit_cut_short_total", dimensions: dimensions)
        fallbacks = Metrics.Counter(label: "payfleet_group_commit_fallbacks_total", dimensions: dimensions)
    }

    /// Runs `job`'s transaction, grouped with others that are ready, and returns its value once
    /// its group committed.
    func run(_ job: Job) async throws -> Value {
        guard settings.maxMembers > 1 else { return try await alone(job) }
        return try await withCheckedThrowingContinuation { continuation in
            let start = state.withLock { state in
                state.pending.append(Waiting(job: job, continuation: continuation))
                let wanted = state.runners < settings.runners
                    || (state.runners < settings.maxRunners && state.pending.count >= settings.maxMembers)
                if wanted { state.runners += 1 }
                return wanted
            }
            if start { Task { await self.runner() } }
        }
    }

    /// Takes groups until none is waiting.
    private func runner() async {
        while var group = take() {
            if settings.wait > .zero, group.count < settings.maxMembers {
                try? await Task.sleep(for: settings.wait)
                group += take(upTo: settings.maxMembers - group.count, orStop: false) ?? []
            }
            await commit(group)
        }
    }

    private func take(upTo limit: Int? = nil, orStop: Bool = true) -> [Waiting]? {
        state.withLock { state in
            guard !state.pending.isEmpty else {
                if orStop { state.runners -= 1 }
                return nil
            }
            let count = min(limit ?? settings.maxMembers, state.pending.count)
            defer { state.pending.removeFirst(count) }
            return Array(state.pending.prefix(count))
        }
    }

    private func commit(_ group: [Waiting]) async {
        groups.increment()
        guard group.count > 1 else {
            members.increment()
            let waiting = group[0]
            do { waiting.continuation.resume(returning: try await alone(waiting.job)) } catch {
                waiting.continuation.resume(throwing: error)
            }
            return
        }
        let outcome: (results: [Result<Value, any Error>], committed: Int)
        do {
            outcome = try await pool.withConnection { tx in
                do {
                    return try await self.commit(group, on: tx)
                } catch {
                    // Best effort: after a lost connection there is nothing to roll back.
                    _ = try? await tx.batch([.rollback])
                    throw error
                }
            }
        } catch {
            // Nothing of the group committed (or, for a connection lost in COMMIT, maybe all of it):
            // each member again, alone; its inbox row tells a done job from a new one.
            fallbacks.increment()
            logger.notice("a group commit failed as a whole; running its members one by one",
                          metadata: ["members": "\(group.count)", "error": "\(error)"])
            members.increment(by: Int64(group.count))
            for waiting in group {
                do { waiting.continuation.resume(returning: try await alone(waiting.job)) } catch {
                    waiting.continuation.resume(throwing: error)
                }
            }
            return
        }
        members.increment(by: Int64(outcome.committed))
        for (waiting, result) in zip(group, outcome.results) { waiting.continuation.resume(with: result) }
        // Members left out by the budget wait for the next group, first in line.
        if outcome.committed < group.count {
            cutShort.increment()
            let rest = group[outcome.committed...]
            let start = state.withLock { state in
                state.pending.insert(contentsOf: rest, at: 0)
                let wanted = state.runners < settings.runners
                if wanted { state.runners += 1 }
                return wanted
            }
            if start { Task { await self.runner() } }
        }
    }

    /// One group's transaction: the locks, each member in its savepoint until the budget is spent,
    /// then `COMMIT`. Returns the results of the members that ran (in order) and how many ran.
    private func commit(_ group: [Waiting], on tx: PostgresConnection) async throws -> (results: [Result<Value, any Error>], committed: Int) {
        var seen = Set<String>()
        let ordered = group.flatMap { locks($0.job) }.filter { seen.insert($0.identity).inserted }.sorted { $0.identity < $1.identity }
        _ = try await tx.batch([.begin] + ordered)
        let started = ContinuousClock.now
        var results: [Result<Value, any Error>] = []
        for waiting in group {
            if !results.isEmpty, ContinuousClock.now - started > settings.budget { break }
            do {
                results.append(.success(try await member(waiting.job, tx, [Self.savepoint], [Self.release])))
            } catch {
                // If even this fails (the connection is gone), the group fails as a whole.
                _ = try await tx.batch([Self.rollbackToSavepoint, Self.release])
                results.append(.failure(error))
            }
        }
        if results.count(where: { if case .success = $0 { true } else { false } }) > 1 {
            Faults.point("group-commit-before-commit")
        }
        _ = try await tx.batch([.commit])
        return (results, results.count)
    }
}
