import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A real PayFleet executable started by a test, with its output in a log file.
public final class FleetProcess: @unchecked Sendable {
    // Mutated only by the test that owns it, one call at a time.
    public let name: String
    public let arguments: [String]
    public private(set) var environment: [String: String]
    public let logPath: String
    private var process: Process

    /// Starts `.build/<config>/<executable>` with the test servers' URLs plus `environment`.
    public init(_ executable: String, arguments: [String] = [], environment extra: [String: String] = [:]) throws {
        name = executable
        self.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["PAYFLEET_AMQP_URL"] = TestEnvironment.amqpURL
        environment["PAYFLEET_DATABASE_URL"] = TestEnvironment.databaseURL
        environment["PAYFLEET_REDIS_URL"] = TestEnvironment.redisURL
        environment["PAYFLEET_TOPOLOGY"] = TestEnvironment.topologyPath
        // Tests run several processes at once against one PostgreSQL: keep each pool small.
        environment["PAYFLEET_CONCURRENCY"] = "8"
        environment["PAYFLEET_DATABASE_POOL_SIZE"] = "4"
        environment.merge(extra) { _, new in new }
        self.environment = environment
        logPath = NSTemporaryDirectory() + "payfleet-test-\(executable)-\(UUID().uuidString.prefix(8)).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process = Process()
        try start()
    }

    private func start() throws {
        let process = Process()
        process.executableURL = TestEnvironment.binDirectory.appendingPathComponent(name)
        process.arguments = arguments
        process.environment = environment
        let log = FileHandle(forWritingAtPath: logPath)!
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
        Self.record(process.processIdentifier)
    }

    /// A test that throws must not leave its process running into the next test (or the next run).
    deinit { stop() }

    /// Kills the process now if it still runs (for `defer`: synchronous, so it happens even when
    /// the test process exits right after the test). Tests that check a graceful stop call
    /// `terminate()` first.
    public func stop() {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
    }

    /// Every spawned pid goes to `PAYFLEET_TEST_PIDS` (set by deploy/local/test.sh), whose exit
    /// trap kills what is left: the last resort if the test process itself dies.
    private static func record(_ pid: Int32) {
        guard let path = TestEnvironment.env("PAYFLEET_TEST_PIDS"),
              let handle = FileHandle(forWritingAtPath: path) ?? {
                  _ = FileManager.default.createFile(atPath: path, contents: nil)
                  return FileHandle(forWritingAtPath: path)
              }() else { return }
        handle.seekToEndOfFile()
        handle.write(Data("\(pid)\n".utf8))
        try? handle.close()
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    /// `kill -9`: no cleanup, no acks, no flush — a crash.
    public func kill9() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// The environment that makes a worker die (`_exit(137)`, as `kill -9`) right after its
    /// `commits`-th commit, before that command's events go out or its delivery is acked
    /// (`Faults`): a crash a known way into a batch, however fast the machine.
    public static func crashing(afterCommit commits: Int) -> [String: String?] {
        ["PAYFLEET_FAULT_CRASH_AT": "after-commit", "PAYFLEET_FAULT_AFTER": "\(commits)", "PAYFLEET_FAULT_ONCE": nil]
    }

    /// The environment change that disarms every fault point for the next start.
    public static let unfaulted: [String: String?] = ["PAYFLEET_FAULT_CRASH_AT": nil]

    /// Starts the same executable again (after a crash), appending to the same log; `changes` set
    /// (or, nil, remove) environment variables for this start and the ones after it.
    public func restart(environment changes: [String: String?] = [:]) throws {
        if process.isRunning { kill9() }
        for (name, value) in changes { environment[name] = value }
        try start()
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit; returns the exit status (nil if it had to be killed).
    @discardableResult
    public func terminate(timeout: Duration = .seconds(30)) async -> Int32? {
        guard process.isRunning else { return process.terminationStatus }
        process.terminate()
        let exited = await eventually(timeout: timeout) { !self.process.isRunning }
        if !exited { kill9(); return nil }
        return process.terminationStatus
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits up to `timeout` for the process to exit by itself (a command that prints and ends);
    /// returns its exit status, or nil (and kills it) if it did not.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(60)) async -> Int32? {
        let exited = await eventually(timeout: timeout) { !self.process.isRunning }
        if !exited { kill9(); return nil }
        return process.terminationStatus
    }

    /// Waits until `GET http://127.0.0.1:<port>/readyz` answers 200.
    public func waitUntilReady(port: Int, timeout: Duration = .seconds(60)) async throws {
        let ready = await eventually(timeout: timeout, every: .milliseconds(200)) {
            guard self.process.isRunning else { return false }
            return (try? await HTTP.get("http://127.0.0.1:\(port)/readyz").status) == 200
        }
        guard ready else { throw ProcessError.notReady(name, String(log.suffix(3_000))) }
    }

    public enum ProcessError: Error, CustomStringConvertible {
        case notReady(String, String)
        public var description: String {
            switch self {
            case .notReady(let name, let log): "\(name) did not become ready; log tail:\n\(log)"
            }
        }
    }

    /// A free TCP port on loopback (bound then released).
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A minimal HTTP client for tests (URLSession).
public enum HTTP {
    public struct Reply: Sendable {
        public let status: Int
        public let headers: [String: String]
        public let body: Data
        public var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        public var text: String { String(decoding: body, as: UTF8.self) }
        public func header(_ name: String) -> String? {
            headers.first { $0.key.lowercased() == name.lowercased() }?.value
        }
    }

    public static func get(_ url: String, headers: [String: String] = [:]) async throws -> Reply {
        try await request("GET", url, headers: headers, body: nil)
    }

    public static func post(_ url: String, headers: [String: String] = [:], body: Data?) async throws -> Reply {
        try await request("POST", url, headers: headers, body: body)
    }

    public static func request(_ method: String, _ url: String, headers: [String: String], body: Data?) async throws -> Reply {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = 30
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpBody = body
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        var fields: [String: String] = [:]
        for (key, value) in http.allHeaderFields { fields["\(key)"] = "\(value)" }
        return Reply(status: http.statusCode, headers: fields, body: data)
    }
}
