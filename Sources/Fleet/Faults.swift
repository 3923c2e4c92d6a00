import Foundation
import Synchronization

/// Crash points for tests that prove exactly-once with a real crash (`kill -9` from the inside):
/// when `PAYFLEET_FAULT_CRASH_AT` names a point, the process dies there at once, with no cleanup,
/// no rollback and no ack — as if the machine had lost power. With `PAYFLEET_FAULT_ONCE` set to a
/// file path, it crashes only if that file does not exist yet (and creates it first), so the
/// restarted process goes past the point. With `PAYFLEET_FAULT_AFTER=N` it crashes the Nth time
/// the point is reached (of concurrent commands, exactly one is the Nth), so a test can crash a
/// worker a known way into a batch however fast the machine. Off unless the variable is set;
/// never set in production.
public enum Faults {
    private static let armed: String? = ProcessInfo.processInfo.environment["PAYFLEET_FAULT_CRASH_AT"]
    private static let onceFile: String? = ProcessInfo.processInfo.environment["PAYFLEET_FAULT_ONCE"]
    private static let after: Int = max(1, Int(ProcessInfo.processInfo.environment["PAYFLEET_FAULT_AFTER"] ?? "") ?? 1)
    private static let passes = Atomic<Int>(0)

    /// Dies here if this point is armed (and this is its armed pass).
    public static func point(_ name: String) {
        guard let armed, armed == name else { return }
        guard passes.add(1, ordering: .relaxed).newValue == after else { return }
        if let onceFile {
            // O_EXCL: of concurrent commands reaching the point, exactly one crashes the process.
            let fd = open(onceFile, O_CREAT | O_EXCL | O_WRONLY, 0o600)
            guard fd >= 0 else { return }
            close(fd)
        }
        FileHandle.standardError.write(Data("PAYFLEET_FAULT_CRASH_AT: crashing at \(name)\n".utf8))
        _exit(137)
    }
}
