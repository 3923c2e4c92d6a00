import ArgumentParser
import Contract
import Fleet
import Foundation
import Payments
import Postgres
import Store

/// How a sweep (`payment.timeout`, `preauth.expire`) works: it never holds one delivery for its
/// whole run. Its transaction reads one batch of what is due and publishes, through the outbox,
/// one command per resource (each its own exactly-once effect, taken by the same worker's
/// queue), plus a continuation after a full batch. A sweep confined to a merchant (`merchantid`
/// on the command, a test clock) sweeps only that merchant's resources.
struct Sweep: Sendable {
    /// The command type, e.g. `payment.timeout`.
    let type: String
    /// The resource number field of a per-resource command, e.g. `payment_no`.
    let field: String
    let batch: Int

    /// The sweep's outcome: what it found and published.
    struct Swept: Codable, Sendable {
        let commandType: String
        let now: String
        let due: Int
        let continued: Bool
        let merchantId: String?
        enum CodingKeys: String, CodingKey {
            case commandType = "command_type", now, due, continued, merchantId = "merchant_id"
        }
    }

    /// What both sweeping handlers do with a command: a sweep (no resource number) reads a batch of
    /// what is `due` and fans it out; a per-resource command, which names its merchant, is
    /// handed to `one` with the sweep's time (its test clock's, in sandbox mode).
    func handle(_ command: Command<SweepRequest>, clock: WallClock,
                due: (_ now: Date, _ merchant: String?, _ after: String?, _ limit: Int) async throws -> [(number: String, merchantId: String)],
                one: (_ merchantId: String, _ number: String, _ now: Date) async throws -> Outcome) async throws -> Outcome {
        let request = command.payload
        let now = request.now ?? clock.now
        guard let number = request.resource else {
            return fanOut(command, request: request, now: now, due: try await due(now, command.merchant, request.after, batch))
        }
        guard let merchantId = command.merchant else {
            return .rejected(code: "invalid_request", message: "a \(type) of one resource names its merchant",
                             errors: [FieldError("merchantid", "is required with data.\(field)")])
        }
        return try await one(merchantId, number, now)
    }

    /// The limit lock a per-resource command takes (it releases limits); a sweep takes none.
    func locks(_ command: Command<SweepRequest>) -> [PostgresStatement] {
        command.payload.resource != nil && !command.merchantId.isEmpty ? [LimitRecord.sharedLock(merchantId: command.merchantId)] : []
    }

    /// Publishes one command per due resource, and a continuation when the batch was full.
    /// `due` is what the batch query found (at most `batch`, by number after `request.after`).
    func fanOut(_ command: Command<SweepRequest>, request: SweepRequest, now: Date,
                due: [(number: String, merchantId: String)]) -> Outcome {
        // Per sweep, so that a command forged early for one resource cannot use up the key of
        // the real one; two sweeps reaching one resource are harmless (the second finds it ended).
        let tag = String(MessageIds.sha256Hex("\(command.merchantId)|\(command.idempotencyKey)").prefix(16))
        // The data as the command type's schema has it (`payment_no` or `pre_auth_no`, `after`),
        // with the sweep's test-clock `now` when it had one.
        func data(_ field: String, _ value: String) -> JSONValue {
            var object: [String: JSONValue] = [field: .string(value)]
            if let now = request.now { object["now"] = .string(Timestamp.format(now)) }
            return .object(object)
        }
        var followUps = due.map { item in
            FollowUp(type: type, merchantId: item.merchantId, key: "\(item.number):\(type):\(tag)", data: data(field, item.number))
        }
        let continued = due.count >= batch
        if continued, let last = due.last?.number {
            followUps.append(FollowUp(type: type, merchantId: command.merchant, key: "sweep:\(type):\(tag):\(last)",
                                      data: data("after", last)))
        }
        let swept = Swept(commandType: type, now: Timestamp.format(now), due: due.count, continued: continued,
                          merchantId: command.merchant)
        return .done([Event(type: "sweep.completed", merchantId: command.merchant, resourceKey: "sweep:\(type):\(command.id)",
                            data: swept)], followUps: followUps)
    }
}

/// Settings of the sweeping workers (timeout, expire).
public struct SweepOptions: ParsableArguments, Sendable {
    @Option(name: .customLong("sweep-batch"), help: "Resources one sweep transaction reads and fans out; a full batch continues in a follow-up sweep (env PAYFLEET_SWEEP_BATCH).")
    public var sweepBatch: Int = Int(environment("PAYFLEET_SWEEP_BATCH") ?? "") ?? 1_000

    @Option(name: .customLong("payment-timeout"), help: "Seconds a payment may stay pending before the timeout sweep ends it (env PAYFLEET_PAYMENT_TIMEOUT; RULES: 30 minutes).")
    public var paymentTimeout: Int = Int(environment("PAYFLEET_PAYMENT_TIMEOUT") ?? "") ?? 1_800

    public init() {}

    public mutating func validate() throws {
        guard (1...100_000).contains(sweepBatch) else { throw ValidationError("--sweep-batch must be 1...100000") }
        guard paymentTimeout >= 1 else { throw ValidationError("--payment-timeout must be >= 1 second") }
    }
}
