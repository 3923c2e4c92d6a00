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

    /// Pipelined (within one transaction): the error thrown is the failing statement's own, the
    /// statements after it did not run, and the connection serves the next lease.
    @Test func aPipelinedBatchReportsTheFailingStatementAndTheConnectionGoesOn() async throws {
        let pool = try Self.pool()
        let table = "batch_\(UUID().uuidString.prefix(8).lowercased())"
        _ = try await pool.query("CREATE TABLE \(table) (n int PRIMARY KEY)")
        do {
            try await pool.withConnection { connection in
                _ = try await connection.batch([
                    .begin,
                    PostgresStatement("INSERT INTO \(table) VALUES ($1)", [1]),
                    PostgresStatement("INSERT INTO \(table) VALUES ($1)", [1]),
                    PostgresStatement("INSERT INTO \(table) VALUES ($1)", [3]),
                    .commit,
                ])
            }
            Issue.record("the batch did not throw")
        } catch let error as PostgresError {
            #expect(error.isUniqueViolation, "\(error)")
        }
        // The next lease finds the aborted transaction rolled back and the session usable.
        let results = try await pool.withConnection { connection in
            try await connection.batch([
                .begin,
                PostgresStatement("INSERT INTO \(table) VALUES ($1), ($2) RETURNING n", [4, 5]),
                PostgresStatement("SELECT count(*) AS c FROM \(table)"),
                .commit,
            ])
        }
        #expect(try results[1].rows.map { try $0.int("n") } == [4, 5])
        #expect(try results[2].rows[0].int("c") == 2)
        _ = try await pool.query("DROP TABLE \(table)")
        await pool.close()
    }

    /// Outside a transaction each statement commits on its own and a failure stops the rest, as
    /// one by one: such a batch is not pipelined (a pipeline would run them as one).
    @Test func anAutocommitBatchStopsAtTheFirstErrorAndKeepsWhatCommitted() async throws {
        let pool = try Self.pool()
        let table = "batch_\(UUID().uuidString.prefix(8).lowercased())"
        _ = try await pool.query("CREATE TABLE \(table) (n int PRIMARY KEY)")
        await #expect(throws: PostgresError.self) {
            try await pool.withConnection { connection in
                _ = try await connection.batch([
                    PostgresStatement("INSERT INTO \(table) VALUES ($1)", [1]),
                    PostgresStatement("INSERT INTO \(table) VALUES ($1)", [1]),
                    PostgresStatement("INSERT INTO \(table) VALUES ($1)", [3]),
                ])
            }
        }
        #expect(try await pool.query("SELECT n FROM \(table) ORDER BY n").rows.map { try $0.int("n") } == [1])
        _ = try await pool.query("DROP TABLE \(table)")
        await pool.close()
    }

    @Test(arguments: [
        (["BEGIN", "q", "COMMIT"], false, true),
        (["q", "q"], true, true),
        (["q", "COMMIT"], true, true),
        (["q", "q"], false, false),
        (["BEGIN", "q", "COMMIT", "q"], false, false),
        (["BEGIN", "COMMIT", "BEGIN"], false, false),
        (["BEGIN", "q"], true, false),
        (["q", "ROLLBACK"], false, false),
    ])
    func whichBatchesArePipelined(shape: [String], open: Bool, pipelined: Bool) {
        let statements = shape.map { $0 == "q" ? PostgresStatement("SELECT 1") : PostgresStatement.simple($0) }
        #expect(PostgresConnection.isPipelined(statements, inOpenTransaction: open) == pipelined)
    }

    /// A connection that dies inside a pipeline: the batch throws a connection failure, and the
    /// next lease reconnects.
    @Test func aConnectionLostInAPipelineIsReportedAndReplaced() async throws {
        let pool = try Self.pool()
        await #expect(throws: PostgresError.self) {
            try await pool.withConnection { connection in
                _ = try await connection.batch([.begin, PostgresStatement("SELECT pg_terminate_backend(pg_backend_pid())"),
                                                PostgresStatement("SELECT 1"), .commit])
            }
        }
        #expect(try await pool.query("SELECT 2 AS n").rows[0].int("n") == 2)
        await pool.close()
    }

    /// `PostgresArray.text` as PostgreSQL reads it back: every element as it was, whatever it holds.
    @Test func aTextArrayParameterComesBackElementForElement() async throws {
        let pool = try Self.pool()
        let values = ["pay_abc", "", "NULL", "a,b", "{x}", "quote\"d", "back\\slash", "\\\"", " spaced ", "订单", "e\u{301}",
                      "'; DROP TABLE orders; --", "=1+2", "tab\there", "line\nbreak"]
        let rows = try await pool.query("SELECT e, i FROM unnest($1::text[]) WITH ORDINALITY AS a(e, i) ORDER BY i",
                                        [PostgresArray.text(values)]).rows
        #expect(try rows.map { try $0.string("e") } == values)
        #expect(try await pool.query("SELECT cardinality($1::text[]) AS n", [PostgresArray.text([])]).rows[0].int("n") == 0)
        await pool.close()
    }
}
