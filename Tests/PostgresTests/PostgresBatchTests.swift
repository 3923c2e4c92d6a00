import Foundation
import Logging
import Postgres
import Testing

/// `PostgresConnection.batch`: several statements in one hop to the connection's thread.
@Suite struct PostgresBatchTests {
    static func pool() throws -> PostgresPool {
        let url = ProcessInfo.processInfo.environment["PAYFLEET_DATABASE_URL"] ?? "postgres://payfleet:payfleet@127.0.0.1:5433/payfleet"
        return PostgresPool(configuration: try PostgresConfiguration(url: url), size: 1, logger: Logger(label: "batch-test"))
    }

    @Test func aBatchRunsInOrderAndCommits() async throws {
        let pool = try Self.pool()
        let table = "batch_\(UUID().uuidString.prefix(8).lowercased())"
        try await pool.withConnection { connection in
            try await connection.execute(simple: "CREATE TABLE \(table) (n int)")
            let results = try await connection.batch([
                .begin,
                PostgresStatement("INSERT INTO \(table) VALUES ($1), ($2)", [1, 2]),
                PostgresStatement("SELECT sum(n) AS s FROM \(table)"),
                .commit,
            ])
            #expect(results.count == 4)
            #expect(results[1].affectedRows == 2)
            #expect(try results[2].rows[0].int("s") == 3)
        }
        #expect(try await pool.query("SELECT count(*) AS c FROM \(table)").rows[0].int("c") == 2)
        _ = try await pool.query("DROP TABLE \(table)")
        await pool.close()
    }

    @Test func aBatchStopsAtTheFirstErrorAndNothingCommits() async throws {
        let pool = try Self.pool()
        let table = "batch_\(UUID().uuidString.prefix(8).lowercased())"
        _ = try await pool.query("CREATE TABLE \(table) (n int PRIMARY KEY)")
        await #expect(throws: PostgresError.self) {
            try await pool.withConnection { connection in
                do {
                    _ = try await connection.batch([
                        .begin,
                        PostgresStatement("INSERT INTO \(table) VALUES ($1)", [1]),
                        PostgresStatement("INSERT INTO \(table) VALUES ($1)", [1]), // unique violation
                        PostgresStatement("INSERT INTO \(table) VALUES ($1)", [3]),
                        .commit,
                    ])
                } catch {
                    _ = try? await connection.batch([.rollback])
                    throw error
                }
            }
        }
        #expect(try await pool.query("SELECT count(*) AS c FROM \(table)").rows[0].int("c") == 0)
        // A COMMIT after a failed statement in the same transaction is reported, not taken for success.
        try await pool.withConnection { connection in
            _ = try await connection.batch([.begin])
            _ = try? await connection.query("INSERT INTO \(table) VALUES ($1), ($1)", [7])
            await #expect(throws: PostgresError.self) { _ = try await connection.batch([.commit]) }
        }
        #expect(try await pool.query("SELECT count(*) AS c FROM \(table)").rows[0].int("c") == 0)
        _ = try await pool.query("DROP TABLE \(table)")
        await pool.close()
    }
}
