import Foundation
import Postgres
import Store

/// A schema of a test's own, first on the search path of `pool`, holding empty copies of public
/// tables (`LIKE ... INCLUDING ALL`): statements that name those tables unqualified see only the
/// test's rows, and no worker or other test touches them.
public struct PrivateSchema: Sendable {
    public let name: String
    public let pool: PostgresPool

    public init(copying tables: [String], poolSize: Int = 4) async throws {
        let shared = try TestEnvironment.postgres(size: 1)
        try await Migrations.apply(to: shared, logger: TestEnvironment.logger)
        let name = TestEnvironment.unique("schematest").replacingOccurrences(of: "-", with: "_")
        try await shared.withConnection { connection in
            try await connection.execute(simple: (["CREATE SCHEMA \(name)"]
                + tables.map { "CREATE TABLE \(name).\($0) (LIKE public.\($0) INCLUDING ALL)" }).joined(separator: "; "))
        }
        await shared.close()
        var configuration = try PostgresConfiguration(url: TestEnvironment.databaseURL)
        configuration["options"] = "-c search_path=\(name),public"
        self.name = name
        pool = PostgresPool(configuration: configuration, size: poolSize, logger: TestEnvironment.logger)
    }

    /// Drops the schema and closes the pool.
    public func drop() async {
        try? await pool.withConnection { try await $0.execute(simple: "DROP SCHEMA \(name) CASCADE") }
        await pool.close()
    }

    /// The shared buffers `sql` reads (hit or read from disk), from `EXPLAIN (ANALYZE, BUFFERS)`
    /// in a transaction rolled back after `settings`: a measure of the work a plan does that,
    /// unlike its time, does not depend on how busy the machine is.
    public func buffersRead(_ sql: String, _ parameters: [(any PostgresEncodable)?], settings: [PostgresStatement] = []) async throws -> Int {
        let results = try await pool.withConnection { connection in
            try await connection.batch([.begin] + settings + [PostgresStatement("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, parameters), .rollback])
        }
        let text = try results[1 + settings.count].rows[0].string("QUERY PLAN")
        guard let plan = (try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])?.first?["Plan"] as? [String: Any] else {
            throw PlanError(text: text)
        }
        return (plan["Shared Hit Blocks"] as? Int ?? 0) + (plan["Shared Read Blocks"] as? Int ?? 0)
    }

    struct PlanError: Error, CustomStringConvertible {
        let text: String
        var description: String { "EXPLAIN gave no plan: \(text)" }
    }
}
