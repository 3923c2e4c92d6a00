/// A first-in, first-out queue of jobs, for a thread that takes them one at a time under its own
/// lock: taking is O(1) (a moving head), and the taken prefix is dropped once it is most of the
/// storage. Not synchronized: the owner guards it.
struct JobQueue<Job> {
    private var jobs: [Job] = []
    private var head = 0

    var isEmpty: Bool { head == jobs.count }

    mutating func append(_ job: Job) { jobs.append(job) }

    /// The oldest job, or nil when empty.
    mutating func popFirst() -> Job? {
        guard head < jobs.count else { return nil }
        let job = jobs[head]
        head += 1
        if head > 64 && head * 2 > jobs.count {
            jobs.removeFirst(head)
            head = 0
        }
        return job
    }

    /// Drops every job (and its storage).
    mutating func removeAll() {
        jobs = []
        head = 0
    }
}
