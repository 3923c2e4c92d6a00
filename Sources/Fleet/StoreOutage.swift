import Postgres
import Redis

/// Errors that say a store is away for a while rather than that a command is bad: PostgreSQL's
/// lost or refused connections, a shutdown or start-up in progress, too many connections, a lock
/// wait that timed out, a deadlock or serialization failure; Redis' lost connections and its
/// "not now" answers (`LOADING`, `BUSY`, `TRYAGAIN`, `MASTERDOWN`).
///
/// A command that meets one is retried without spending its retry budget (`RetryPolicy`): an
/// outage is nobody's poison, and a budget spent on it would park a good command without an
/// outcome. A statement timeout is not among them: one command's query can time out every time.
public enum StoreOutage {
    public static func matches(_ error: any Error) -> Bool {
        if let error = error as? PostgresError {
            return error.isConnectionFailure || error.isDeadlock || error.isSerializationFailure
                || ["55P03", "53300"].contains(error.sqlState ?? "")
        }
        if let error = error as? RedisError {
            return error.isConnection || ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN"].contains { error.message.hasPrefix($0) }
        }
        return false
    }
}
