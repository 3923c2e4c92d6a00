import Foundation

/// Runs `rabbitmqctl` against the test stack's node, with what reaching it needs (the cookie's
/// HOME, the stack's private epmd port) read from the env file `deploy/local/lib.sh` writes
/// (`PAYFLEET_RABBITMQ_ENV`).
public enum RabbitMQControl {
    public static var node: String { TestEnvironment.env("PAYFLEET_RABBITMQ_NODE") ?? "payfleet-test@localhost" }

    /// Tests that restart the broker run only when asked, alone (`deploy/local/test.sh` does, after the main run).
    public static var chaosTestsEnabled: Bool { TestEnvironment.env("PAYFLEET_CHAOS_TESTS") == "1" }

    @discardableResult
    public static func run(_ arguments: [String]) throws -> String {
        let environment = ProcessInfo.processInfo.environment
        var child = environment
        if let home = environment["PAYFLEET_RABBITMQ_HOME"] { child["HOME"] = home }
        if let file = environment["PAYFLEET_RABBITMQ_ENV"], let text = try? String(contentsOfFile: file, encoding: .utf8) {
            for line in text.split(separator: "\n") where line.hasPrefix("export ") {
                let assignment = line.dropFirst("export ".count)
                guard let equals = assignment.firstIndex(of: "="), !assignment.contains("$") else { continue }
                var value = String(assignment[assignment.index(after: equals)...])
                if value.count >= 2, value.first == "'", value.last == "'" { value = String(value.dropFirst().dropLast()) }
                child[String(assignment[..<equals])] = value
            }
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: environment["PAYFLEET_RABBITMQCTL"] ?? "/usr/lib/rabbitmq/bin/rabbitmqctl")
        process.arguments = ["-n", node] + arguments
        process.environment = child
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ControlError(message: "rabbitmqctl \(arguments.joined(separator: " ")) exited \(process.terminationStatus): "
                + String(decoding: errorData, as: UTF8.self))
        }
        return String(decoding: data, as: UTF8.self)
    }

    public struct ControlError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }
}
