/// Paces work to at most `perSecond` starts a second (a token bucket holding one second's worth,
/// so a burst after a quiet spell is bounded too). The runtime uses it to keep a background worker
/// (a sweep fanning out thousands of commands) from crowding out live traffic on shared servers.
actor RateLimit {
    let perSecond: Double
    private var tokens: Double
    private var last = ContinuousClock.now

    init(perSecond: Double) {
        precondition(perSecond > 0)
        self.perSecond = perSecond
        tokens = perSecond
    }

    /// Waits until one more start is allowed.
    func acquire() async {
        while true {
            let now = ContinuousClock.now
            let elapsed = now - last
            last = now
            tokens = min(perSecond, tokens + perSecond * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
            if tokens >= 1 {
                tokens -= 1
                return
            }
            try? await Task.sleep(for: .seconds((1 - tokens) / perSecond))
        }
    }
}
