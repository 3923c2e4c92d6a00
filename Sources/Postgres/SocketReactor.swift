import CLibPQ
import ConnectionThread
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One thread per process that waits (`epoll`) until a connection's socket is ready and resumes
/// the task waiting for it: the event loop under every `PostgresPool` of the process.
///
/// Why: with a thread per connection, every statement cost a wake-up of that thread to send it
/// and another when the reply came, plus the resumption of the task. Here the task sends the
/// statement itself (libpq in non-blocking mode) and waits for the reply as a continuation; this
/// thread wakes once for every batch of sockets that became ready together.
///
/// Each socket has at most one waiter at a time (a connection serves one call at a time), armed
/// for one report (`EPOLLONESHOT`).
final class SocketReactor: Sendable {
    static let shared = SocketReactor()

    private let epoll: Int32
    private let waiters = Mutex<[Int32: CheckedContinuation<Void, any Error>]>([:])

    private init() {
        epoll = cpq_epoll_create()
        precondition(epoll >= 0, "epoll_create1 failed: errno \(errno)")
        NamedThread.start("postgres-io") { [self] in self.loop() }
    }

    /// Returns when `fd` is readable (or also writable, with `writable`), or has an error or hang-up
    /// to report: the caller's next libpq call finds out which.
    func wait(fd: Int32, writable: Bool = false) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            // Stored before the fd is armed: the report may come at once, on the loop's thread.
            let earlier = waiters.withLock { $0.updateValue(continuation, forKey: fd) }
            precondition(earlier == nil, "two waiters for one socket")
            let armed = cpq_epoll_arm(epoll, fd, writable ? 1 : 0)
            if armed != 0 {
                let mine = waiters.withLock { $0.removeValue(forKey: fd) }
                mine?.resume(throwing: PostgresError(message: "cannot wait for the connection's socket: errno \(-armed)",
                                                     connectionLost: true))
            }
        }
    }

    private func loop() {
        var ready = [Int32](repeating: 0, count: 64)
        while true {
            let count = ready.withUnsafeMutableBufferPointer { cpq_epoll_wait(epoll, $0.baseAddress, Int32($0.count)) }
            if count < 0 {
                if -count == EINTR { continue }
                fatalError("epoll_wait failed: errno \(-count)")
            }
            let resumed = waiters.withLock { waiters in ready[0..<Int(count)].compactMap { waiters.removeValue(forKey: $0) } }
            for continuation in resumed { continuation.resume() }
        }
    }
}
