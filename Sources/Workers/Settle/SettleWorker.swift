import ArgumentParser
import Fleet
import Store

/// Settings of `payfleet-settle`.
public struct SettleOptions: ParsableArguments, Sendable {
    @OptionGroup public var sandbox: SandboxFlag

    @Option(name: .customLong("settlement-batch"), help: "Merchants one settlement.run transaction reads and fans out; a full batch continues in a follow-up (env PAYFLEET_SETTLEMENT_BATCH).")
    public var settlementBatch: Int = Int(environment("PAYFLEET_SETTLEMENT_BATCH") ?? "") ?? 500

    public init() {}

    public mutating func validate() throws {
        guard (1...100_000).contains(settlementBatch) else { throw ValidationError("--settlement-batch must be 1...100000") }
    }
}

/// `payfleet-settle`: consumes `payfleet.settle` (`settlement.run`, `settlement.merchant`).
public struct SettleWorker: WorkerSetup {
    public let name = "payfleet-settle"
    public let queue: String? = "payfleet.settle"
    let options: SettleOptions

    public init(options: SettleOptions) { self.options = options }

    public func assemble(_ environment: WorkerEnvironment) async throws -> WorkerAssembly {
        var assembly = WorkerAssembly()
        assembly.handle(SettleRunHandler(clock: environment.clock, options: options))
        assembly.handle(SettleMerchantHandler(clock: environment.clock, options: options,
                                              configuration: Configuration(redis: environment.redis)))
        return assembly
    }
}
