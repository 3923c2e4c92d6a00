import Logging
import Postgres

/// One schema change. Migrations are applied in version order, each in its own transaction,
/// under an advisory lock so that concurrent `payfleet migrate` runs are harmless.
public struct Migration: Sendable {
    public let version: Int
    public let name: String
    public let sql: String
}

/// The schema of PayFleet's PostgreSQL database: the one place it is defined.
public enum Migrations {
    public static let all: [Migration] = [
        Migration(version: 1, name: "merchants, payments, inbox, outbox, http idempotency", sql: """
        CREATE TABLE merchants (
            merchant_id     text PRIMARY KEY,
            name            text NOT NULL,
            tier            text NOT NULL CHECK (tier IN ('starter', 'business', 'enterprise', 'premium')),
            base_currency   text NOT NULL,
            country         text NOT NULL,
            auto_settlement boolean NOT NULL DEFAULT true,
            limit_overrides jsonb,
            api_key_hash    text NOT NULL UNIQUE,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE payments (
            payment_no      text PRIMARY KEY,
            merchant_id     text NOT NULL REFERENCES merchants (merchant_id),
            order_no        text NOT NULL,
            amount          bigint NOT NULL CHECK (amount > 0),
            amount_base     bigint,
            currency        text NOT NULL,
            country         text NOT NULL,
            pay_method      text NOT NULL,
            channel         text,
            channel_ref     text,
            routing         jsonb,
            channel_fee     bigint NOT NULL DEFAULT 0,
            status          text NOT NULL,
            failure_code    text,
            failure_message text,
            refunded_amount bigint NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0 AND refunded_amount <= amount),
            pre_auth_no     text,
            subject         text,
            metadata        jsonb NOT NULL DEFAULT '{}',
            customer        jsonb,
            command_id      text NOT NULL,
            version         integer NOT NULL DEFAULT 1,
            created_at      timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL
        );
        CREATE INDEX payments_merchant_order ON payments (merchant_id, order_no);
        CREATE INDEX payments_merchant_created ON payments (merchant_id, created_at);

        -- The inbox: one row per (merchant, idempotency key), written in the same transaction as
        -- the command's effect, holding the outcome event so that a duplicate re-emits it.
        CREATE TABLE inbox (
            merchant_id         text NOT NULL,
            idempotency_key     text NOT NULL,
            command_id          text NOT NULL,
            command_type        text NOT NULL,
            request_hash        text NOT NULL,
            outcome_type        text,
            outcome_routing_key text,
            outcome_event       text,
            created_at          timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (merchant_id, idempotency_key)
        );

        -- The transactional outbox: events committed with their effect, published after commit.
        CREATE TABLE outbox (
            id             bigserial PRIMARY KEY,
            event_id       text NOT NULL,
            event_type     text NOT NULL,
            exchange       text NOT NULL,
            routing_key    text NOT NULL,
            resource_key   text NOT NULL,
            correlation_id text,
            body           text NOT NULL,
            created_at     timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX outbox_resource ON outbox (resource_key, id);

        -- HTTP Idempotency-Key records (CONTRACT §4), kept 24 h.
        CREATE TABLE http_idempotency (
            merchant_id      text NOT NULL,
            idempotency_key  text NOT NULL,
            request_hash     text NOT NULL,
            state            text NOT NULL CHECK (state IN ('in_flight', 'done')),
            response_status  integer,
            response_headers jsonb,
            response_body    text,
            created_at       timestamptz NOT NULL DEFAULT now(),
            updated_at       timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (merchant_id, idempotency_key)
        );
        """),
        Migration(version: 2, name: "payments without a foreign key to merchants", sql: """
        -- Every payment insert checked the merchant through a FOR KEY SHARE lock on the merchant's
        -- row; concurrent payments of one merchant then churn MultiXacts on that one hot row
        -- (measured: INSERT INTO payments at 0.29 ms mean, 6x the other inserts). The authorize
        -- worker reads the merchant in the same transaction, and merchants are never deleted.
        ALTER TABLE payments DROP CONSTRAINT IF EXISTS payments_merchant_id_fkey;
        """),
        Migration(version: 3, name: "settings, risk blacklist and events, audit log", sql: """
        -- Hot-reloadable configuration documents (routing, risk rules), versioned so that workers
        -- notice a change with one cheap query.
        CREATE TABLE settings (
            name       text PRIMARY KEY,
            value      jsonb NOT NULL,
            version    bigint NOT NULL DEFAULT 1,
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE risk_blacklist (
            type       text NOT NULL CHECK (type IN ('customer_id', 'email', 'ip', 'country')),
            value      text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (type, value)
        );

        CREATE TABLE risk_events (
            id          bigserial PRIMARY KEY,
            merchant_id text NOT NULL,
            payment_no  text,
            rule        text NOT NULL,
            detail      text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX risk_events_merchant ON risk_events (merchant_id, created_at);

        CREATE TABLE audit_logs (
            id         bigserial PRIMARY KEY,
            action     text NOT NULL,
            target     text NOT NULL,
            operator   text NOT NULL,
            reason     text NOT NULL,
            detail     jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX audit_logs_target ON audit_logs (target, created_at);
        """),
        Migration(version: 4, name: "limit usage: what counts, and the synced counters", sql: """
        -- What counts in a limit window, defined once: the durable record the Redis counters are
        -- rebuilt from and checked against. A payment counts from the moment it is authorized
        -- (succeeded or pending) in the windows of its creation; a failed one never counts.
        CREATE FUNCTION limit_recorded(merchant text, since timestamptz, until timestamptz) RETURNS bigint
        LANGUAGE sql STABLE AS $$
            SELECT COALESCE(sum(amount_base), 0)::bigint FROM payments
            WHERE merchant_id = merchant AND created_at >= since AND created_at < until
              AND status IN ('succeeded', 'pending', 'partially_refunded', 'refunded')
        $$;

        -- The Redis counters as last synced (`used`), next to the durable record (`recorded`, read
        -- just before them): `used` below `recorded` means Redis under-counted.
        CREATE TABLE limit_usage (
            merchant_id text NOT NULL,
            window_kind text NOT NULL CHECK (window_kind IN ('day', 'month')),
            window_id   text NOT NULL,
            used        bigint NOT NULL,
            recorded    bigint NOT NULL,
            synced_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (merchant_id, window_kind, window_id)
        );
        """),
        Migration(version: 5, name: "the payment lifecycle: pre-authorizations, refunds, callbacks, limit entries, pins, sandbox channels, the clock", sql: """
        -- Payments remember their limit reservation (its key and the time whose windows counted it:
        -- the first attempt's, pinned) and what the channel said when it did not answer.
        ALTER TABLE payments ADD COLUMN limit_key text, ADD COLUMN counted_at timestamptz, ADD COLUMN channel_state text;
        UPDATE payments p SET limit_key = i.idempotency_key
            FROM inbox i WHERE i.command_id = p.command_id AND i.merchant_id = p.merchant_id;
        UPDATE payments SET counted_at = created_at;
        ALTER TABLE payments ALTER COLUMN counted_at SET NOT NULL;
        -- The timeout sweep reads pending payments by age.
        CREATE INDEX payments_pending ON payments (created_at) WHERE status = 'pending';

        -- The durable record of the limit windows, one row per change of a reservation, written in
        -- the transaction of the change: + when a payment or pre-authorization counts, - when it
        -- gives back (failure after pending, timeout, cancel, expiry, a final capture's rest, a
        -- refund). A give-back lowers a window only if it happened while that window was current,
        -- as the Redis scripts do.
        CREATE TABLE limit_entries (
            id          bigserial PRIMARY KEY,
            merchant_id text NOT NULL,
            limit_key   text NOT NULL,
            counted_at  timestamptz NOT NULL,
            amount      bigint NOT NULL,
            at          timestamptz NOT NULL,
            kind        text NOT NULL CHECK (kind IN ('reserve', 'release', 'refund')),
            ref         text NOT NULL
        );
        CREATE INDEX limit_entries_window ON limit_entries (merchant_id, counted_at);
        INSERT INTO limit_entries (merchant_id, limit_key, counted_at, amount, at, kind, ref)
            SELECT merchant_id, coalesce(limit_key, payment_no), counted_at, amount_base, counted_at, 'reserve', payment_no
            FROM payments
            WHERE amount_base IS NOT NULL AND status IN ('succeeded', 'pending', 'partially_refunded', 'refunded');

        CREATE OR REPLACE FUNCTION limit_recorded(merchant text, since timestamptz, until timestamptz) RETURNS bigint
        LANGUAGE sql STABLE AS $$
            SELECT COALESCE(sum(amount), 0)::bigint FROM limit_entries
            WHERE merchant_id = merchant AND counted_at >= since AND counted_at < until
              AND (kind = 'reserve' OR (at >= since AND at < until))
        $$;

        -- The first attempt's decisions a retried or redelivered command must repeat: the channel
        -- (with the whole routing record), the amount it reserved and the time whose windows count
        -- it. Written outside the command's transaction, so that a rollback keeps it.
        CREATE TABLE command_pins (
            merchant_id     text NOT NULL,
            idempotency_key text NOT NULL,
            request_hash    text NOT NULL,
            decision        jsonb,
            amount_base     bigint NOT NULL,
            counted_at      timestamptz NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (merchant_id, idempotency_key)
        );

        -- The sandbox channels' own memory, as a PSP's database would hold it: every call by its
        -- idempotency key with its first answer, and how often it was made. Written outside any
        -- command's transaction.
        CREATE TABLE sandbox_channel_calls (
            channel         text NOT NULL,
            idempotency_key text NOT NULL,
            operation       text NOT NULL,
            resource        text NOT NULL,
            amount          bigint,
            currency        text NOT NULL,
            answer          text NOT NULL,
            reference       text,
            calls           integer NOT NULL DEFAULT 1,
            first_at        timestamptz NOT NULL DEFAULT now(),
            last_at         timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (channel, idempotency_key)
        );

        CREATE TABLE pre_authorizations (
            pre_auth_no     text PRIMARY KEY,
            merchant_id     text NOT NULL,
            order_no        text NOT NULL,
            amount          bigint NOT NULL CHECK (amount > 0),
            amount_base     bigint NOT NULL,
            currency        text NOT NULL,
            country         text NOT NULL,
            pay_method      text NOT NULL,
            channel         text,
            channel_ref     text,
            routing         jsonb,
            status          text NOT NULL,
            captured_amount bigint NOT NULL DEFAULT 0 CHECK (captured_amount >= 0),
            capture_count   integer NOT NULL DEFAULT 0,
            released_amount bigint NOT NULL DEFAULT 0 CHECK (released_amount >= 0),
            expires_at      timestamptz NOT NULL,
            failure_code    text,
            failure_message text,
            subject         text,
            metadata        jsonb NOT NULL DEFAULT '{}',
            customer        jsonb,
            command_id      text NOT NULL,
            limit_key       text NOT NULL,
            counted_at      timestamptz NOT NULL,
            version         integer NOT NULL DEFAULT 1,
            created_at      timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL,
            CHECK (captured_amount + released_amount <= amount)
        );
        CREATE INDEX pre_authorizations_list ON pre_authorizations (merchant_id, created_at DESC, pre_auth_no DESC);
        CREATE INDEX pre_authorizations_status_list ON pre_authorizations (merchant_id, status, created_at DESC, pre_auth_no DESC);
        CREATE INDEX pre_authorizations_open ON pre_authorizations (expires_at) WHERE status IN ('authorized', 'partially_captured');
        CREATE INDEX payments_pre_auth ON payments (pre_auth_no) WHERE pre_auth_no IS NOT NULL;

        CREATE TABLE refunds (
            refund_no   text PRIMARY KEY,
            payment_no  text NOT NULL,
            merchant_id text NOT NULL,
            amount      bigint NOT NULL CHECK (amount > 0),
            amount_base bigint NOT NULL,
            currency    text NOT NULL,
            reason      text,
            channel_ref text,
            command_id  text NOT NULL,
            created_at  timestamptz NOT NULL
        );
        CREATE INDEX refunds_payment ON refunds (payment_no);
        CREATE INDEX refunds_merchant_created ON refunds (merchant_id, created_at);

        -- Channels' asynchronous results as received (signature checked), aged out by the archive.
        CREATE TABLE payment_callbacks (
            id          bigserial PRIMARY KEY,
            channel     text NOT NULL,
            payment_no  text,
            body        text NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX payment_callbacks_received ON payment_callbacks (received_at);

        -- The clock: one row per task and slot.
        CREATE TABLE scheduled_tasks (
            task        text NOT NULL,
            slot        timestamptz NOT NULL,
            status      text NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped')),
            lock_token  text,
            command_id  text,
            attempts    integer NOT NULL DEFAULT 0,
            error       text,
            created_at  timestamptz NOT NULL DEFAULT now(),
            started_at  timestamptz,
            finished_at timestamptz,
            PRIMARY KEY (task, slot)
        );
        """),
        Migration(version: 6, name: "money out: orders, the event log, settlements, exports, archive tables", sql: """
        -- Orders (CONTRACT §3): one per merchant and order_no, kept in the transaction of each
        -- payment change that moves it. `paid_amount` and `refunded_amount` are what its payments
        -- took and gave back, so its status is derived without reading them.
        CREATE TABLE orders (
            merchant_id     text NOT NULL,
            order_no        text NOT NULL,
            amount          bigint NOT NULL CHECK (amount > 0),
            currency        text NOT NULL,
            status          text NOT NULL CHECK (status IN ('created', 'paid', 'partially_refunded', 'refunded', 'cancelled')),
            paid_amount     bigint NOT NULL DEFAULT 0 CHECK (paid_amount >= 0),
            refunded_amount bigint NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
            payments        text[] NOT NULL DEFAULT '{}',
            version         integer NOT NULL DEFAULT 1,
            created_at      timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL,
            PRIMARY KEY (merchant_id, order_no)
        );

        -- When a payment's money was taken (settlement counts it on that day), and the settlement
        -- that holds it; the same for refunds. Stamped in the settlement's own transaction.
        ALTER TABLE payments ADD COLUMN succeeded_at timestamptz, ADD COLUMN settlement_id text;
        UPDATE payments SET succeeded_at = created_at WHERE status IN ('succeeded', 'partially_refunded', 'refunded');
        CREATE INDEX payments_unsettled ON payments (merchant_id, succeeded_at) WHERE settlement_id IS NULL AND succeeded_at IS NOT NULL;
        CREATE INDEX payments_settlement ON payments (settlement_id) WHERE settlement_id IS NOT NULL;
        ALTER TABLE refunds ADD COLUMN settlement_id text;
        CREATE INDEX refunds_unsettled ON refunds (merchant_id, created_at) WHERE settlement_id IS NULL;
        CREATE INDEX refunds_settlement ON refunds (settlement_id) WHERE settlement_id IS NOT NULL;
        -- Exports read a merchant's payments by creation time, in a stable order.
        DROP INDEX payments_merchant_created;
        CREATE INDEX payments_merchant_created ON payments (merchant_id, created_at, payment_no);

        CREATE TABLE settlements (
            settlement_id text PRIMARY KEY,
            merchant_id   text NOT NULL,
            currency      text NOT NULL,
            day           date NOT NULL,
            gross         bigint NOT NULL,
            fee           bigint NOT NULL,
            net           bigint NOT NULL,
            fee_bps       integer NOT NULL,
            payout_date   date NOT NULL,
            payment_count integer NOT NULL,
            refund_count  integer NOT NULL,
            created_at    timestamptz NOT NULL,
            UNIQUE (merchant_id, currency, day)
        );
        CREATE INDEX settlements_list ON settlements (merchant_id, day DESC, settlement_id DESC);

        -- The merchant's event log: every merchant event the relay published, recorded in the
        -- transaction that deletes its outbox row; `id` is the publish order (per resource, the
        -- commit order). Kept 30 days, then archived.
        CREATE TABLE notifications (
            id           bigserial PRIMARY KEY,
            event_id     text NOT NULL,
            merchant_id  text NOT NULL,
            event_type   text NOT NULL,
            resource_key text NOT NULL,
            body         text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX notifications_merchant ON notifications (merchant_id, id);
        CREATE INDEX notifications_merchant_type ON notifications (merchant_id, event_type, id);
        CREATE INDEX notifications_created ON notifications (created_at);

        -- Archive tables: the live table's columns (no defaults: ids are kept), a primary key so a
        -- row can never be archived twice, and when it was moved.
        CREATE TABLE payment_callbacks_archive (LIKE payment_callbacks, archived_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id));
        CREATE TABLE notifications_archive (LIKE notifications, archived_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id));
        CREATE TABLE audit_logs_archive (LIKE audit_logs, archived_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id));
        CREATE TABLE risk_events_archive (LIKE risk_events, archived_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id));
        CREATE INDEX payment_callbacks_archive_received ON payment_callbacks_archive (received_at);
        CREATE INDEX notifications_archive_created ON notifications_archive (created_at);
        CREATE INDEX audit_logs_archive_created ON audit_logs_archive (created_at);
        CREATE INDEX risk_events_archive_created ON risk_events_archive (created_at);
        CREATE INDEX audit_logs_created ON audit_logs (created_at);
        CREATE INDEX risk_events_created ON risk_events (created_at);
        -- Rows each archive run moved, per table, counted in the transaction of each batch.
        CREATE TABLE archive_runs (
            run_id     text NOT NULL,
            table_name text NOT NULL,
            moved      bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (run_id, table_name)
        );

        -- Payment exports: the task, with its progress and where the next chunk starts (the last
        -- row written, by creation time and number); the file's chunks in order.
        CREATE TABLE export_tasks (
            task_id         text PRIMARY KEY,
            merchant_id     text NOT NULL,
            status          text NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'expired')),
            start_date      date NOT NULL,
            end_date        date NOT NULL,
            format          text NOT NULL,
            rows_done       bigint NOT NULL DEFAULT 0,
            rows_total      bigint NOT NULL DEFAULT 0,
            next_seq        integer NOT NULL DEFAULT 0,
            bytes           bigint NOT NULL DEFAULT 0,
            last_created_at timestamptz,
            last_payment_no text,
            sha256          text,
            expires_at      timestamptz,
            failure_message text,
            version         integer NOT NULL DEFAULT 1,
            created_at      timestamptz NOT NULL,
            updated_at      timestamptz NOT NULL
        );
        CREATE INDEX export_tasks_open ON export_tasks (created_at) WHERE status <> 'expired';
        CREATE TABLE export_chunks (
            task_id text NOT NULL,
            seq     integer NOT NULL,
            rows    integer NOT NULL,
            data    text NOT NULL,
            PRIMARY KEY (task_id, seq)
        );
        -- Chunks are written once, read once or twice and dropped within a day: not compressed.
        ALTER TABLE export_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
        """),
        Migration(version: 7, name: "hardening: broker users, unique event ids in the outbox, retention indexes", sql: """
        -- Broker users made through RabbitMQ's management API: bound to one merchant, or internal
        -- (merchant_id NULL: acts for every merchant). The password is never stored.
        CREATE TABLE broker_users (
            username    text PRIMARY KEY,
            merchant_id text,
            created_by  text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX broker_users_merchant ON broker_users (merchant_id);
        -- An event id names one merchant's (or the system's) command and event type: one row each.
        CREATE UNIQUE INDEX outbox_event_id ON outbox (event_id);
        -- The relay leases the rows it publishes instead of holding a transaction while it waits
        -- for the broker's confirms; an expired lease (the relay died) frees them for any relay.
        ALTER TABLE outbox ADD COLUMN lease_until timestamptz;
        -- Retention: the clock prunes inbox rows and HTTP idempotency keys by age.
        CREATE INDEX inbox_created ON inbox (created_at);
        CREATE INDEX http_idempotency_created ON http_idempotency (created_at);
        """),
        Migration(version: 8, name: "throughput: the outbox is a queue table", sql: """
        -- Every outbox row is inserted, leased (an update) and deleted within a second or so, so
        -- the table is mostly dead rows between vacuums. Free space on each page lets the lease
        -- update stay on its page (a HOT update: no new index entries), and autovacuum takes the
        -- table after every 1,000 dead rows instead of a fifth of a table that is nearly empty.
        ALTER TABLE outbox SET (fillfactor = 50, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                                autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0,
                                autovacuum_analyze_threshold = 1000);
        """),
        Migration(version: 9, name: "throughput: room on inbox pages for the outcome", sql: """
        -- A command inserts its inbox row (about 200 bytes), then in the same transaction writes
        -- its outcome event into it (1-2 KB more). Pages filled to 60% keep room for that update on
        -- the row's own page: a HOT update, with no new entries in the inbox's indexes.
        ALTER TABLE inbox SET (fillfactor = 60);
        """),
        Migration(version: 10, name: "throughput: the limit sync adds only what committed since its last pass", sql: """
        -- Each limit entry carries its transaction's id. The sync keeps, per merchant and window,
        -- the total it recorded and the horizon it counted through (every transaction older than
        -- the horizon had ended), and adds only the entries between that horizon and the next:
        -- a pass costs what was written since the last, not a month of a big merchant's entries
        -- (1-2 s a pass before, every 15 s). Entries written before this migration have no id;
        -- the first pass over a window sums them in full, as before.
        ALTER TABLE limit_entries ADD COLUMN xid xid8;
        ALTER TABLE limit_entries ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
        CREATE INDEX limit_entries_xid ON limit_entries (merchant_id, xid);
        ALTER TABLE limit_usage ADD COLUMN recorded_through xid8;
        """),
    ]

    /// Applies every migration not yet applied; returns the versions it applied.
    @discardableResult
    public static func apply(to pool: PostgresPool, logger: Logger) async throws -> [Int] {
        try await pool.transaction { connection in
            // A migration may build an index over a big table: no session timeout applies to it.
            try await connection.execute(simple: "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
            _ = try await connection.query("SELECT pg_advisory_xact_lock(7270001)", [])
            try await connection.execute(simple: """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())
                """)
            let applied = Set(try await connection.query("SELECT version FROM schema_migrations", []).rows.map { try $0.int("version") })
            var done: [Int] = []
            for migration in all where !applied.contains(migration.version) {
                logger.info("applying migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
                try await connection.execute(simple: migration.sql)
                _ = try await connection.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                               [migration.version, migration.name])
                done.append(migration.version)
            }
            return done
        }
    }
}
