import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A dedicated OS thread that carries its name to the OS, as `top -H`, `ps -L`, `perf` and
/// `/proc/<pid>/task/*/comm` show it.
///
/// Foundation's `Thread.name` does not reach the OS thread on Linux (every thread keeps the name
/// of the one that made it), and Linux keeps at most 15 bytes: a longer name keeps its first 15
/// bytes, cut at a character boundary. Written through `/proc/thread-self/comm`, since glibc's
/// `pthread_setname_np` is a GNU extension that Swift's Glibc module does not show.
public enum NamedThread {
    /// Starts `body` on a new thread called `name`.
    ///
    /// Kept out of cross-module optimization: it copied the closure's thunk into the callers'
    /// modules while the closure itself was inlined away here, which left an undefined symbol
    /// that only the static stdlib's `-export-dynamic` let the linker accept.
    @_semantics("optimize.no.crossmodule")
    public static func start(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread {
            setCurrentName(name)
            body()
        }
        thread.name = name
        thread.start()
    }

    /// Names the calling thread.
    public static func setCurrentName(_ name: String) {
        var kept = ""
        for character in name {
            if kept.utf8.count + String(character).utf8.count > 15 { break }
            kept.append(character)
        }
        #if canImport(Glibc)
        let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = kept.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        #elseif canImport(Darwin)
        _ = pthread_setname_np(kept)
        #endif
    }

    /// The calling OS thread's name (empty if it cannot be read).
    public static var currentName: String {
        var buffer = [UInt8](repeating: 0, count: 64)
        #if canImport(Glibc)
        let fd = open("/proc/thread-self/comm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        let count = read(fd, &buffer, buffer.count)
        close(fd)
        guard count > 0 else { return "" }
        var bytes = buffer.prefix(count)
        if bytes.last == UInt8(ascii: "\n") { bytes = bytes.dropLast() }
        return String(decoding: bytes, as: UTF8.self)
        #else
        guard pthread_getname_np(pthread_self(), &buffer, buffer.count) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
        #endif
    }
}
