import Foundation
import Logging
import PayFleetTesting
import Postgres
import Testing

/// Integration tests against a real PostgreSQL (`PAYFLEET_DATABASE_URL`). Each test works in
/// tables of its own (random names), so the tests run in parallel and on a shared database.
@Suite("Postgres pool", .timeLimit(.minutes(2)))
struct PostgresPoolTests {
    static let url = ProcessInfo.processInfo.environment["PAYFLEET_DATABASE_URL"]
        ?? "postgres://payfleet:payfleet@127.0.0.1:5433/payfleet"

    static func makePool(size: Int = 2) throws -> PostgresPool {
        var logger = Logger(label: "PostgresTests")
        logger.logLevel = .error
        return PostgresPool(configuration: try PostgresConfiguration(url: url), size: size, logger: logger)
    }

    /// A fresh table name for one test.
    static func tableName(_ prefix: String) -> String {
        "pf_test_\(prefix)_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(12)
    }

    /// The local stack reaches PostgreSQL through its Unix socket (`deploy/local/up.sh`): a URL
    /// whose `host` query parameter is a directory, percent-encoded, connects there. The server
    /// sees no client address on a socket, and 127.0.0.1 over TCP, so the check tells them apart.
    @Test("a URL whose host is a socket directory connects through the Unix socket, not TCP")
    func connectsThroughTheUnixSocket() async throws {
        let tcp = try PostgresConfiguration(url: Self.url)
        let port = tcp["port"] ?? "5432"
        let directory = TestEnvironment.postgresSocketDirectory
        let encoded = try #require(directory.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed))
        let socketURL = "postgres://payfleet:payfleet@/payfleet?host=\(encoded)&port=\(port)"
        var logger = Logger(label: "PostgresTests")
        logger.logLevel = .error
        for (configuration, local) in [(try PostgresConfiguration(url: socketURL), true), (tcp, false)] {
            let pool = PostgresPool(configuration: configuration, size: 1, logger: logger)
            let row = try #require(try await pool.query(
                "SELECT inet_client_addr() IS NULL AS local, current_database() AS db, current_user AS who").rows.first)
            #expect(try row.bool("local") == local, "\(configuration)")
            #expect(try row.string("db") == "payfleet")
            #expect(try row.string("who") == "payfleet")
            await pool.close()
        }
    }

    @Test("every PostgresEncodable type round-trips through a parameterized insert and select, NULL included")
    func roundTripEveryType() async throws {
        let pool = try Self.makePool()
        let table = Self.tableName("types")
        try await pool.withConnection { connection in
            try await connection.execute(simple: """
                CREATE TABLE \(table) (
                    id int PRIMARY KEY, s text, i bigint, i32 integer, i64 bigint, b boolean,
                    d double precision, ts timestamptz, u uuid, bin bytea, maybe text)
                """)
        }
        let hostile = "'); DROP TABLE \(table); --"
        let unicode = "Zürich 東京 🚀 \u{0301}e \"quoted\" \\backslash"
        let bytes: [UInt8] = [0x00, 0x01, 0xff, 0x00, 0x7f, 0x5c, 0x27]
        let date = Date(timeIntervalSince1970: 1_795_000_000.123456)
        let uuid = UUID()
        let maybe: String? = "present"

        for (id, text) in [(1, hostile), (2, unicode)] {
            let insert = try await pool.query(
                "INSERT INTO \(table) (id, s, i, i32, i64, b, d, ts, u, bin, maybe) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                [id, text, Int.min, Int32.max, Int64.max, true, -0.1, date, uuid, bytes, maybe])
            #expect(insert.affectedRows == 1)
        }
        let nulls = try await pool.query(
            "INSERT INTO \(table) (id, s, i, i32, i64, b, d, ts, u, bin, maybe) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            [3, nil, nil, nil, nil, Bool?.none, Double?.none, Date?.none, UUID?.none, [UInt8]?.none, String?.none])
        #expect(nulls.affectedRows == 1)

        let result = try await pool.query("SELECT * FROM \(table) WHERE id = ANY($1::int[]) ORDER BY id", ["{1,2,3}"])
        #expect(result.rows.count == 3)
        #expect(result.rows.first?.columns.first == "id")
        for (row, text) in zip(result.rows.prefix(2), [hostile, unicode]) {
            #expect(try row.string("s") == text)
            #expect(try row.int("i") == Int.min)
            #expect(try row.int32("i32") == Int32.max)
            #expect(try row.int64("i64") == Int64.max)
            #expect(try row.bool("b") == true)
            #expect(try row.double("d") == -0.1)
            #expect(abs(try row.date("ts").timeIntervalSince(date)) < 0.000_001)
            #expect(try row.uuid("u") == uuid)
            #expect(try row.bytes("bin") == bytes)
            #expect(try row.optionalString("maybe") == "present")
        }
        let nullRow = try #require(result.rows.last)
        #expect(nullRow["s"] == nil)
        #expect(try nullRow.optionalString("s") == nil)
        #expect(try nullRow.optionalInt64("i") == nil)
        #expect(try nullRow.optionalBool("b") == nil)
        #expect(try nullRow.optionalDouble("d") == nil)
        #expect(try nullRow.optionalDate("ts") == nil)
        #expect(try nullRow.optionalUUID("u") == nil)
        #expect(try nullRow.optionalBytes("bin") == nil)
        #expect(throws: PostgresError.self) { try nullRow.string("s") }
        #expect(throws: PostgresError.self) { try nullRow.int("no_such_column") }
        #expect(throws: PostgresError.self) { try result.rows[0].int("s") }

        // The hostile string was data, not SQL: the table is still there.
        let count = try await pool.query("SELECT count(*) AS n FROM \(table)")
        #expect(try count.first?.int("n") == 3)
        _ = try await pool.query("DROP TABLE \(table)")
        await pool.close()
    }

    @Test("parameter arrays of any encodable element type bind; nil and Optional.none bind NULL")
    func parameterArrayForms() async throws {
        let pool = try Self.makePool(size: 1)
        let names: [String] = ["a"]
        let optionals: [Int?] = [nil]
        let mixed: [any PostgresEncodable] = [7, "x"]
        try await pool.withConnection { connection in
            #expect(try await connection.query("SELECT 1 AS one").first?.int("one") == 1)
            #expect(try await connection.query("SELECT 1 AS one", []).first?.int("one") == 1)
            #expect(try await connection.query("SELECT $1::text AS v", names).first?["v"] == "a")
            #expect(try await connection.query("SELECT $1::int AS v", optionals).first?["v"] == nil)
            #expect(try await connection.query("SELECT $1::int AS a, $2::text AS b", mixed).first?["b"] == "x")
            let row = try #require(try await connection.query("SELECT $1::int AS a, $2::int AS b, $3::text AS c", [1, nil, Int?.none]).first)
            #expect(try row.int("a") == 1)
            #expect(try row.optionalInt("b") == nil)
            #expect(try row.optionalString("c") == nil)
        }
        #expect(try await pool.query("SELECT $1::int AS v", optionals).first?["v"] == nil)
        await pool.close()
    }

    @Test("timestamptz text in other zones and forms decodes to the right instant")
    func timestampDecoding() async throws {
        let pool = try Self.makePool(size: 1)
        let row = try #require(try await pool.query("""
            SELECT '2026-11-25 01:02:03.123456+00'::timestamptz AS utc,
                   '2026-11-25 06:32:03.5+05:30'::timestamptz::text AS shifted,
                   '2026-11-25T01:02:03Z'::timestamp AS naive,
                   '2026-11-25'::date AS day,
                   $1::timestamptz AS echoed
            """, [Date(timeIntervalSince1970: 0)]).first)
        let expected = Date(timeIntervalSince1970: 1_795_568_523.123456)
        #expect(abs(try row.date("utc").timeIntervalSince(expected)) < 0.000_001)
        #expect(abs(try row.date("shifted").timeIntervalSince1970 - 1_795_568_523.5) < 0.000_001)
        #expect(try row.date("naive").timeIntervalSince1970 == 1_795_568_523)
        #expect(try row.date("day").timeIntervalSince1970 == 1_795_564_800)
        #expect(try row.date("echoed").timeIntervalSince1970 == 0)
        await pool.close()
    }

    @Test("a unique violation surfaces SQLSTATE 23505")
    func uniqueViolation() async throws {
        let pool = try Self.makePool(size: 1)
        let table = Self.tableName("unique")
        _ = try await pool.query("CREATE TABLE \(table) (id text PRIMARY KEY)")
        _ = try await pool.query("INSERT INTO \(table) (id) VALUES ($1)", ["a"])
        let error = await #expect(throws: PostgresError.self) {
            try await pool.query("INSERT INTO \(table) (id) VALUES ($1)", ["a"])
        }
        #expect(error?.sqlState == "23505")
        #expect(error?.isUniqueViolation == true)
        #expect(error?.isConnectionFailure == false)
        #expect(error?.constraint == "\(table)_pkey")
        #expect(error?.detail?.contains("already exists") == true)
        // The connection is still fine afterwards.
        #expect(try await pool.query("SELECT count(*) AS n FROM \(table)").first?.int("n") == 1)
        _ = try await pool.query("DROP TABLE \(table)")
        await pool.close()
    }

    struct Abort: Error {}

    @Test("a transaction commits on success and rolls back when its body throws")
    func transactionCommitAndRollback() async throws {
        let pool = try Self.makePool()
        let table = Self.tableName("tx")
        _ = try await pool.query("CREATE TABLE \(table) (id text PRIMARY KEY)")

        let inserted = try await pool.transaction { connection in
            try await connection.query("INSERT INTO \(table) (id) VALUES ($1)", ["kept"]).affectedRows
        }
        #expect(inserted == 1)

        await #expect(throws: Abort.self) {
            try await pool.transaction { connection in
                _ = try await connection.query("INSERT INTO \(table) (id) VALUES ($1)", ["discarded"])
                throw Abort()
            }
        }

        // The body swallowed a failed statement: COMMIT would silently roll back; we throw instead.
        let swallowed = await #expect(throws: PostgresError.self) {
            try await pool.transaction { connection in
                _ = try await connection.query("INSERT INTO \(table) (id) VALUES ($1)", ["also-discarded"])
                _ = try? await connection.query("INSERT INTO \(table) (id) VALUES ($1)", ["kept"])
            }
        }
        #expect(swallowed?.sqlState == "25P02")

        let ids = try await pool.query("SELECT id FROM \(table) ORDER BY id").rows.map { try $0.string("id") }
        #expect(ids == ["kept"])
        _ = try await pool.query("DROP TABLE \(table)")
        await pool.close()
    }

    @Test("50 concurrent transactions on a pool of 4 each add one to a counter")
    func concurrentTransactions() async throws {
        let pool = try Self.makePool(size: 4)
        let table = Self.tableName("counter")
        _ = try await pool.query("CREATE TABLE \(table) (id int PRIMARY KEY, n int NOT NULL)")
        _ = try await pool.query("INSERT INTO \(table) (id, n) VALUES (1, 0)")
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<50 {
                group.addTask {
                    try await pool.transaction { connection in
                        try await connection.query("UPDATE \(table) SET n = n + 1 WHERE id = $1", [1]).affectedRows
                    }
                }
            }
            var updated = 0
            for try await rows in group { updated += rows }
            #expect(updated == 50)
        }
        #expect(try await pool.query("SELECT n FROM \(table) WHERE id = 1").first?.int("n") == 50)
        _ = try await pool.query("DROP TABLE \(table)")
        await pool.close()
    }

    @Test("calls waiting for the server do not hold Swift's cooperative threads")
    func blockingStaysOffTheCooperativePool() async throws {
        // Three calls wait on an advisory lock: more than the cooperative pool has threads on a
        // 2-core machine. If they blocked those threads (a blocking libpq call on the task's
        // thread), the queries below that observe them and release the lock could never run and
        // the test would hit its time limit.
        let holder = try Self.makePool(size: 1)
        let waiters = try Self.makePool(size: 3)
        let key = Int.random(in: 1_000_000...2_000_000_000)
        _ = try await holder.query("SELECT pg_advisory_lock($1::bigint)", [key])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    _ = try await waiters.transaction { try await $0.query("SELECT pg_advisory_xact_lock($1::bigint)", [key]) }
                }
            }
            var blocked = 0
            for _ in 0..<500 where blocked < 3 {
                blocked = try await holder.query(
                    "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid::bigint = $1::bigint",
                    [key]).first!.int("n")
                if blocked < 3 { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(blocked == 3)
            _ = try await holder.query("SELECT pg_advisory_unlock($1::bigint)", [key])
            try await group.waitForAll()
        }
        await holder.close()
        await waiters.close()
    }

    @Test("a 16 MB parameter and a 16 MB result go through the non-blocking connection whole")
    func largeMessagesAreFlushedAndReadWhole() async throws {
        // Far more than a socket buffer holds: the send waits for the socket to drain (`PQflush`
        // answers 1 until it has), and the result arrives over many reads.
        let pool = try Self.makePool(size: 1)
        let text = String(repeating: "0123456789abcdef", count: 1 << 20)
        let row = try #require(try await pool.query(
            "SELECT length($1::text) AS n, md5($1::text) = md5(repeat('0123456789abcdef', 1048576)) AS same, $1::text AS back",
            [text]).rows.first)
        #expect(try row.int("n") == text.utf8.count)
        #expect(try row.bool("same"))
        #expect(try row.string("back") == text)
        // The connection is still in step: the next statement gets its own answer.
        #expect(try await pool.query("SELECT 41 + 1 AS n").first!.int("n") == 42)
        await pool.close()
    }

    @Test("calls made at once on one leased connection run one after another, each with its own answer")
    func concurrentCallsOnOneConnectionTakeTurns() async throws {
        let pool = try Self.makePool(size: 1)
        try await pool.withConnection { connection in
            // Connected first, so that every call below shares the one libpq connection.
            _ = try await connection.query("SELECT 1 AS n")
            try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                for index in 0..<20 {
                    group.addTask {
                        let sleep = index.isMultiple(of: 3) ? "pg_sleep(0.01), " : ""
                        let rows = try await connection.query("SELECT \(sleep)$1::int * 2 AS n", [index])
                        return (index, try rows.first!.int("n"))
                    }
                }
                for try await (index, doubled) in group { #expect(doubled == index * 2) }
            }
        }
        await pool.close()
    }

    @Test("a statement is prepared once per connection and reused")
    func preparedStatementReuse() async throws {
        let pool = try Self.makePool(size: 1)
        let sql = "SELECT $1::int + 1 AS next, $2::text AS label"
        try await pool.withConnection { connection in
            for i in 0..<300 {
                let row = try #require(try await connection.query(sql, [i, "n\(i)"]).first)
                #expect(try row.int("next") == i + 1)
                #expect(try row.string("label") == "n\(i)")
            }
            let prepared = try await connection.query(
                "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = $1", [sql])
            #expect(try prepared.first?.int("n") == 1)
        }
        await pool.close()
    }

    @Test("a cached statement is prepared again after DEALLOCATE ALL or a changed table")
    func stalePreparedStatements() async throws {
        let pool = try Self.makePool(size: 1)
        let table = Self.tableName("stale")
        try await pool.withConnection { connection in
            try await connection.execute(simple: "CREATE TABLE \(table) (x int); INSERT INTO \(table) VALUES (1)")
            let select = "SELECT * FROM \(table) WHERE x = $1"
            #expect(try await connection.query(select, [1]).first?.columns == ["x"])
            try await connection.execute(simple: "DEALLOCATE ALL")
            #expect(try await connection.query(select, [1]).rows.count == 1)
            try await connection.execute(simple: "ALTER TABLE \(table) ADD COLUMN y text DEFAULT 'new'")
            let row = try #require(try await connection.query(select, [1]).first)
            #expect(row.columns == ["x", "y"])
            #expect(try row.string("y") == "new")
            try await connection.execute(simple: "DROP TABLE \(table)")
        }
        await pool.close()
    }

    @Test("a statement's column names are its own, also when a new connection gives its name to another statement")
    func columnNamesFollowTheStatement() async throws {
        let pool = try Self.makePool(size: 1)
        let admin = try Self.makePool(size: 1)
        // The first statement on a connection is prepared as the first name, on the old
        // connection and on the new one alike: the new one's result must not get the old columns.
        let first = try await pool.withConnection { try await $0.query("SELECT pg_backend_pid() AS a, 1 AS b").first! }
        #expect(first.columns == ["a", "b"])
        _ = try await admin.query("SELECT pg_terminate_backend($1)", [try first.int("a")])
        for _ in 0..<200 {
            let alive = try await admin.query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1", [try first.int("a")])
            if try alive.first?.int("n") == 0 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let other: PostgresRow
        do {
            other = try await pool.withConnection { try await $0.query("SELECT 2 AS c, 3 AS d").first! }
        } catch let error as PostgresError {
            #expect(error.isConnectionFailure, "\(error)")
            other = try await pool.withConnection { try await $0.query("SELECT 2 AS c, 3 AS d").first! }
        }
        #expect(other.columns == ["c", "d"])
        #expect(try other.int("d") == 3)
        await pool.close()
        await admin.close()
    }

    @Test("after its backend is terminated, the pool reconnects on the next lease")
    func recoversFromTerminatedBackend() async throws {
        let pool = try Self.makePool(size: 1)
        let admin = try Self.makePool(size: 1)

        func backendPID() async throws -> Int {
            try await pool.withConnection { try await $0.query("SELECT pg_backend_pid() AS pid").first!.int("pid") }
        }
        func terminate(_ pid: Int) async throws {
            _ = try await admin.query("SELECT pg_terminate_backend($1)", [pid])
            // Bounded: wait until the backend is gone.
            for _ in 0..<200 {
                let alive = try await admin.query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1", [pid])
                if try alive.first?.int("n") == 0 { return }
                try await Task.sleep(for: .milliseconds(20))
            }
            Issue.record("backend \(pid) still alive")
        }

        // Between leases: the dead socket is usually noticed at lease start, so the next call
        // works; if it is not, that one call throws isConnectionFailure and the one after works.
        let first = try await backendPID()
        try await terminate(first)
        let second: Int
        do {
            second = try await backendPID()
        } catch let error as PostgresError {
            #expect(error.isConnectionFailure, "\(error)")
            second = try await backendPID()
        }
        #expect(second != first)

        // Within one lease: the call after the loss throws isConnectionFailure, and so does every
        // later call in that lease (no silent reconnect in the middle of a caller's transaction).
        try await pool.withConnection { connection in
            let pid = try await connection.query("SELECT pg_backend_pid() AS pid").first!.int("pid")
            try await terminate(pid)
            let error = await #expect(throws: PostgresError.self) {
                try await connection.query("SELECT 1")
            }
            #expect(error?.isConnectionFailure == true, "\(String(describing: error))")
            let again = await #expect(throws: PostgresError.self) {
                try await connection.query("SELECT 1")
            }
            #expect(again?.isConnectionFailure == true)
        }
        let third = try await backendPID()
        #expect(third != second)
        await pool.close()
        await admin.close()
    }

    @Test("a connection used after its lease ended throws; a closed pool refuses leases")
    func leaseEnds() async throws {
        let pool = try Self.makePool(size: 1)
        let escaped = try await pool.withConnection { connection in
            _ = try await connection.query("SELECT 1")
            return connection
        }
        await #expect(throws: PostgresError.self) { try await escaped.query("SELECT 1") }
        await pool.close()
        await #expect(throws: PostgresError.self) { try await pool.query("SELECT 1") }
    }

    @Test("leases wait while all connections are taken; a cancelled waiter stops waiting")
    func leasesWait() async throws {
        let pool = try Self.makePool(size: 1)
        let log = OrderLog()
        let (gate, openGate) = AsyncStream<Void>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await pool.withConnection { connection in
                    _ = try await connection.query("SELECT 1")
                    log.append(-1)
                    for await _ in gate {}  // hold the only connection until the gate closes
                }
            }
            for _ in 0..<500 where log.count == 0 { try await Task.sleep(for: .milliseconds(10)) }
            #expect(log.all == [-1])

            for i in 0..<5 {
                group.addTask {
                    try await pool.withConnection { connection in
                        log.append(i)
                        _ = try await connection.query("SELECT $1::int", [i])
                    }
                }
            }
            let cancelled = Task { try await pool.withConnection { _ in 42 } }
            cancelled.cancel()
            await #expect(throws: CancellationError.self) { try await cancelled.value }

            try await Task.sleep(for: .milliseconds(50))
            #expect(log.all == [-1], "nobody got the held connection")
            openGate.finish()
            try await group.waitForAll()
        }
        #expect(log.all.count == 6)
        #expect(Set(log.all) == Set(-1...4))
        await pool.close()
    }

    @Test("configuration accepts URLs and keyword strings")
    func configuration() throws {
        let fromURL = try PostgresConfiguration(url: "postgres://pay%40fleet:p%3Ass%20w@db.example:6543/pay%2Fdb?sslmode=disable&application_name=pf")
        #expect(fromURL["user"] == "pay@fleet")
        #expect(fromURL["password"] == "p:ss w")
        #expect(fromURL["host"] == "db.example")
        #expect(fromURL["port"] == "6543")
        #expect(fromURL["dbname"] == "pay/db")
        #expect(fromURL["sslmode"] == "disable")
        #expect(fromURL.conninfo.contains("password='p:ss w'"))
        #expect(!fromURL.description.contains("p:ss w"))
        #expect(fromURL["client_encoding"] == "UTF8")

        let keywords = try PostgresConfiguration(url: "host=127.0.0.1 port=5440 dbname=payfleet user=payfleet connect_timeout=3")
        #expect(keywords["port"] == "5440")
        #expect(keywords["connect_timeout"] == "3")
        #expect(throws: PostgresError.self) { try PostgresConfiguration(url: "postgres://host:notaport/db?bogus_key=1") }
    }
}

/// Records which task got a lease, in order.
/// `@unchecked Sendable`: `values` is only touched while holding `lock`.
final class OrderLog: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Int] = []
    func append(_ value: Int) { lock.withLock { values.append(value) } }
    var count: Int { lock.withLock { values.count } }
    var all: [Int] { lock.withLock { values } }
}

/// Compile-time check: the closure APIs are usable from an actor, capturing its state.
actor LedgerProbe {
    var seen = 0
    func run(_ pool: PostgresPool) async throws -> Int {
        try await pool.withConnection { connection in
            seen += 1
            return try await connection.query("SELECT 1 AS one").first!.int("one") + seen
        }
    }
}
