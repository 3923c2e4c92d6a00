import Testing

/// Every end-to-end suite runs its own worker and ingress processes on the shared
/// `payfleet.authorize` queue, so they run one after another, never alongside each other.
@Suite(.serialized) enum EndToEnd {}
