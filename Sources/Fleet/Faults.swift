import Foundation

/// Crash points for tests that prove exactly-once with a real crash (`kill -9` from the inside):
/// when `PAYFLEET_FAULT_CRASH_AT` names a point, the process dies there at once, with no cleanup,
/// no rollback and no ack — as if the machine had lost power. With `PAYFLEET_FAULT_ONCE` set to a
/// file path, it crashes only if that file does not exist yet (and creates it first), so the
/// restarted process goes past the point. Off unless the variable is set; never set in production.
public enum Faults {
    private static let armed: String? = ProcessInfo.processInfo.environment["PAYFLEET_FAULT_CRASH_AT"]
    private static let onceFile: String? = ProcessInfo.processInfo.environment["PAYFLEET_FAULT_ONCE"]

    /// Dies here if this point is armed.
    public static func point(_ name: String) {
        guard let armed, armed == name else { return }
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
