import ConnectionThread
import Foundation
import Synchronization
import Testing

/// The connection thread's two paths: a hop to its own thread, and a caller on a
/// `BlockingExecutor` thread running the job itself while the connection is idle.
@Suite struct ConnectionThreadTests {
    struct Closed: Error {}

    /// What the jobs record: how many run at once (never more than one) and where they ran.
    struct Probe {
        var active = 0
        var overlapped = 0
        var inline = 0
        var hopped = 0
    }

    @Test func aCallFromABlockingThreadRunsThereAndAnyOtherCallHops() async throws {
        let thread = ConnectionThread(name: "test-connection", state: 0, teardown: { _ in })
        let executor = BlockingExecutor(name: "test-blocking")
        let onBlockingThread = try await withTaskExecutorPreference(executor) {
            try await thread.run(closedError: Closed()) { _ in BlockingExecutor.isCurrentThread }
        }
        #expect(onBlockingThread, "an idle connection runs the job on the caller's blocking thread")
        let fromThePool = try await thread.run(closedError: Closed()) { _ in BlockingExecutor.isCurrentThread }
        #expect(!fromThePool, "a caller on Swift's pool hops to the connection's own thread")
        await thread.shutdownAndWait()
        executor.shutdown()
    }

    /// The OS sees each thread's name (`top -H`, `perf`), cut to Linux's 15 bytes at a character
    /// boundary.
    @Test func threadsCarryTheirNamesToTheOperatingSystem() async throws {
        let thread = ConnectionThread(name: "postgres-7", state: 0, teardown: { _ in })
        #expect(try await thread.run(closedError: Closed()) { _ in NamedThread.currentName } == "postgres-7")
        await thread.shutdownAndWait()
        let long = ConnectionThread(name: "caf\u{E9}-connection-name", state: 0, teardown: { _ in })
        // "café-connectio" is 15 bytes: é takes two.
        #expect(try await long.run(closedError: Closed()) { _ in NamedThread.currentName } == "caf\u{E9}-connectio")
        await long.shutdownAndWait()
        let cut = ConnectionThread(name: "abcdefghijklmn\u{E9}", state: 0, teardown: { _ in })
        // 14 bytes fit; é would make 16, so it is left out whole rather than split.
        #expect(try await cut.run(closedError: Closed()) { _ in NamedThread.currentName } == "abcdefghijklmn")
        await cut.shutdownAndWait()
        let executor = BlockingExecutor(name: "command-3")
        let onExecutor = await withTaskExecutorPreference(executor) { NamedThread.currentName }
        #expect(onExecutor == "command-3")
        executor.shutdown()
    }

    /// Callers on blocking threads and one on the pool, all at once on one connection: every job
    /// runs alone (its state is never shared), both paths are taken, none is lost. The moment
    /// that matters: a hop's job running with the queue empty, when an inline caller must still
    /// see that the connection is busy.
    @Test func inlineAndQueuedJobsNeverOverlap() async throws {
        let thread = ConnectionThread(name: "test-connection", state: Probe(), teardown: { _ in })
        let executors = (0..<4).map { BlockingExecutor(name: "test-blocking-\($0)") }
        let perCaller = 200
        try await withThrowingTaskGroup(of: Void.self) { group in
            for caller in 0...executors.count {
                let preference: (any TaskExecutor)? = caller < executors.count ? executors[caller] : nil
                group.addTask(executorPreference: preference) {
                    for _ in 0..<perCaller {
                        try await thread.run(closedError: Closed()) { probe in
                            probe.active += 1
                            if probe.active > 1 { probe.overlapped += 1 }
                            if BlockingExecutor.isCurrentThread { probe.inline += 1 } else { probe.hopped += 1 }
                            usleep(100)
                            probe.active -= 1
                        }
                        // Pauses let the queue run empty now and then, so that inline callers
                        // arrive both while the connection is idle and while it runs a hop's job.
                        try await Task.sleep(for: .microseconds(Int.random(in: 0...400)))
                    }
                }
            }
            try await group.waitForAll()
        }
        let probe = try await thread.run(closedError: Closed()) { $0 }
        #expect(probe.overlapped == 0, "two jobs ran at once: \(probe)")
        #expect(probe.inline + probe.hopped == (executors.count + 1) * perCaller, "\(probe)")
        #expect(probe.inline > 0, "inline taken: \(probe)")
        #expect(probe.hopped > 0, "hop taken: \(probe)")
        await thread.shutdownAndWait()
        for executor in executors { executor.shutdown() }
    }

    /// A job queued while a caller runs inline waits for it, then runs; shutdown waits for both.
    @Test func shutdownWaitsForAnInlineJob() async throws {
        let thread = ConnectionThread(name: "test-connection", state: [String](), teardown: { _ in })
        let executor = BlockingExecutor(name: "test-blocking")
        let started = Atomic<Bool>(false)
        let inline = Task(executorPreference: executor) {
            try await thread.run(closedError: Closed()) { log in
                started.store(true, ordering: .releasing)
                usleep(200_000)
                log.append("inline")
            }
        }
        while !started.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(1)) }
        let queued = Task { try await thread.run(closedError: Closed()) { log in log.append("queued") } }
        try await queued.value
        try await inline.value
        let log = try await thread.run(closedError: Closed()) { $0 }
        #expect(log == ["inline", "queued"])
        await thread.shutdownAndWait()
        await #expect(throws: Closed.self) { try await thread.run(closedError: Closed()) { _ in } }
        executor.shutdown()
    }
}
