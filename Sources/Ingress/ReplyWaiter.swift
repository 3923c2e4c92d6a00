import AMQP
import Synchronization

/// Matches replies that arrive on RabbitMQ direct reply-to (`amq.rabbitmq.reply-to`) to the
/// requests waiting for them, by `correlation_id` (= the command id).
///
/// A request calls `expect` before it publishes, so a reply that beats the waiter is kept.
final class ReplyWaiter: Sendable {
    private enum Slot {
        case expecting
        case arrived([UInt8])
        case waiting(CheckedContinuation<[UInt8]?, Never>)
    }

    private let slots = Mutex<[String: Slot]>([:])

    func expect(_ id: String) { slots.withLock { $0[id] = .expecting } }

    /// Called for every delivery on the reply consumer.
    func deliver(_ delivery: AMQPDelivery) {
        guard let id = delivery.properties.correlationId else { return }
        let waiter = slots.withLock { slots -> CheckedContinuation<[UInt8]?, Never>? in
            switch slots[id] {
            case .expecting?:
                slots[id] = .arrived(delivery.body)
                return nil
            case .waiting(let continuation)?:
                slots[id] = nil
                return continuation
            case .arrived?, nil:
                return nil // late, duplicate, or not ours
            }
        }
        waiter?.resume(returning: delivery.body)
    }

    /// The reply body, or nil after `timeout`. Ends the expectation either way.
    func wait(for id: String, timeout: Duration) async -> [UInt8]? {
        await withTaskGroup(of: [UInt8]?.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let ready = self.slots.withLock { slots -> [UInt8]?? in
                        switch slots[id] {
                        case .arrived(let body)?:
                            slots[id] = nil
                            return .some(body)
                        case .expecting?:
                            slots[id] = .waiting(continuation)
                            return .none
                        default:
                            return .some(nil)
                        }
                    }
                    if let ready { continuation.resume(returning: ready) }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                self.forget(id)
                return nil
            }
            let first = await group.next()!
            group.cancelAll()
            self.forget(id)
            return first
        }
    }

    /// Drops the expectation, resuming a parked waiter with nil.
    func forget(_ id: String) {
        let waiter = slots.withLock { slots -> CheckedContinuation<[UInt8]?, Never>? in
            defer { slots[id] = nil }
            if case .waiting(let continuation)? = slots[id] { return continuation }
            return nil
        }
        waiter?.resume(returning: nil)
    }
}
