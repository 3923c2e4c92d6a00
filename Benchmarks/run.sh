#!/usr/bin/env bash
# Benchmarks/run.sh — end-to-end throughput and latency of the authorize path, against the
# machine's own limits measured in the same run, printed as one table.
#
#   Benchmarks/run.sh [--commands N] [--seconds S] [--http-connections C] [--holds N] [--due N]
#                     [--drain-commands N] [--drain-replicas 1,2,3]
#
# Runs on the local stack (deploy/local/up.sh; started here if it is not up). Measures:
#   1. pgbench: the authorize command's SQL (its pin and the channel's record, then one
#      transaction: limit lock, inbox claim, order, payment, limit entry, order update, inbox
#      outcome, two outbox rows) on the same PostgreSQL, 8 clients, prepared statements — the
#      database's ceiling for this work;
#   2. the raw broker: persistent messages to a quorum queue, publish with confirms, then consume;
#   3. authorize over AMQP: publish payment.create with confirms until its outcome event arrives;
#      and a queued backlog (--drain-commands, default 20,000) drained by 1, 2 and 3 authorize
#      workers (--drain-replicas), with the CPU each process spent per command, the workers'
#      RSS, and the workers' CPU by thread (Benchmarks/drain.py); and light load: a quarter of the AMQP rate, published on a
#      schedule (open loop), for p50 and p99;
#   4. authorize over HTTP: POST /api/v1/payments with wrk, waiting for the outcome (201);
#   5. the rulebook: routing decisions per second (library alone); limit reservations per second
#      through the Redis script, against redis-benchmark running an EVAL of the same script on the
#      same Redis; merchant lookup latency through the Redis cache and from PostgreSQL;
#   6. captures over AMQP (pre-authorizations made first, each captured in full), against pgbench
#      running the capture transaction's SQL (and the channel's own record) in the same run;
#   7. a timeout sweep over 10,000 due payments (sandbox test clock): its duration, and authorize
#      p99 measured while it runs against p99 without it;
#   8. money out: an export of 100,000 and of 1,000,000 payments (rows per second against
#      PostgreSQL's own COPY ... TO STDOUT WITH CSV of the same rows; the export worker's peak
#      RSS after each), an archive run over 1,000,000 rows (rows per second, and authorize p99
#      during it against p99 without it), and a batch query of 100 ids against 100 single GETs.
#      `--money-out-only` runs this part alone, `--no-money-out` leaves it out; `--export-rows N` and
#      `--archive-rows N` size it.
# No timing is asserted anywhere: the table reports rates and ratios.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
commands=5000 seconds=15 http_connections=32 holds=3000 due=10000 drain_commands=20000 drain_replicas=1,2,3
export_rows=1000000 archive_rows=1000000 money_out_only=0 money_out=1
while (($#)); do
  case "$1" in
    --export-rows) export_rows=$2; shift 2 ;;
    --archive-rows) archive_rows=$2; shift 2 ;;
    --money-out-only) money_out_only=1; shift ;;
    --no-money-out) money_out=0; shift ;;
    --commands) commands=$2; shift 2 ;;
    --drain-commands) drain_commands=$2; shift 2 ;;
    --drain-replicas) drain_replicas=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --http-connections) http_connections=$2; shift 2 ;;
    --holds) holds=$2; shift 2 ;;
    --due) due=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=deploy/local/lib.sh
source "$root/deploy/local/lib.sh"   # PAYFLEET_RELEASE_BUILD: the flags of up.sh's build
# The running stack's URLs, as up.sh wrote them: pgbench reaches PostgreSQL the way the fleet
# does (its Unix socket), so that the baseline and the fleet share the transport.
if [[ -z ${PAYFLEET_DATABASE_URL:-} && -f $root/.state/local/env ]]; then
  # shellcheck source=/dev/null
  source "$root/.state/local/env"
fi
http_port=${PAYFLEET_HTTP_PORT:-8080}
export PAYFLEET_AMQP_URL=${PAYFLEET_AMQP_URL:-amqp://payfleet:payfleet@127.0.0.1:5672/%2F}
export PAYFLEET_DATABASE_URL=${PAYFLEET_DATABASE_URL:-postgres://payfleet:payfleet@127.0.0.1:5432/payfleet}
export PAYFLEET_REDIS_URL=${PAYFLEET_REDIS_URL:-redis://127.0.0.1:6379/0}
redis_port=$(sed -E 's#.*:([0-9]+)(/[0-9]+)?$#\1#' <<<"$PAYFLEET_REDIS_URL")
pgbin=/usr/lib/postgresql/15/bin

section() { printf '\n== %s\n' "$*" >&2; }

if ! curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then
  section "starting the local stack (deploy/local/up.sh)"
  deploy/local/up.sh >&2
fi
command -v wrk >/dev/null || { section "installing wrk"; apt-get install -y -qq wrk >&2 || { apt-get update -qq && apt-get install -y -qq wrk >&2; }; }
"${PAYFLEET_RELEASE_BUILD[@]}" --product payfleet-bench >&2
bench=$("${PAYFLEET_RELEASE_BUILD[@]}" --show-bin-path)/payfleet-bench
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
# A baseline whose script failed is no baseline: pgbench aborts a client on an SQL error and
# still prints a rate for the others.
pgbench_checked() {
  local out
  out=$("$pgbin/pgbench" "$@" 2>&1) || { echo "$out" >&2; echo "pgbench failed" >&2; exit 1; }
  if grep -qE "aborted in command|ERROR:" <<<"$out" || ! grep -qE "number of failed transactions: 0 " <<<"$out"; then
    echo "$out" >&2
    echo "pgbench's script failed: the baseline above is not valid" >&2
    exit 1
  fi
  echo "$out"
}

export PGPASSWORD=payfleet
psql_() { psql "$PAYFLEET_DATABASE_URL" -v ON_ERROR_STOP=1 -q "$@"; }
if ((money_out_only)); then
  source "$root/Benchmarks/money-out.sh"
  exit 0
fi

section "1/7 pgbench: the authorize transaction (with its pin and the channel's record), 8 clients, ${seconds}s"
psql_ <<'SQL'
DROP TABLE IF EXISTS bench_inbox, bench_payments, bench_outbox, bench_limit_entries, bench_pins, bench_channel_calls,
  bench_pre_authorizations, bench_orders;
CREATE TABLE bench_inbox (LIKE inbox INCLUDING ALL);
CREATE TABLE bench_payments (LIKE payments INCLUDING ALL);
CREATE TABLE bench_outbox (LIKE outbox INCLUDING ALL);
CREATE TABLE bench_limit_entries (LIKE limit_entries INCLUDING ALL);
CREATE TABLE bench_pins (LIKE command_pins INCLUDING ALL);
CREATE TABLE bench_channel_calls (LIKE sandbox_channel_calls INCLUDING ALL);
CREATE TABLE bench_pre_authorizations (LIKE pre_authorizations INCLUDING ALL);
CREATE TABLE bench_orders (LIKE orders INCLUDING ALL);
SQL
# The same statements as one authorize command, in its order, with rows of the same size (a real
# routing record, outcome event and order event from `payfleet-bench sample`): the pin and the
# channel's record (each its own autocommit), then the merchant's limit lock, the inbox claim, the
# order's row, the payment, its limit entry, the order's update, the inbox outcome with the
# payment's outbox row, and the order's outbox row. The worker reads the merchant from the Redis
# cache, so the script does not read it either.
sample=$("$bench" sample)
bench_merchant=$("$bench" merchant)
script=$(mktemp)
python3 - "$sample" "$(json "['merchant_id']" <<<"$bench_merchant")" >"$script" <<'PY'
import json, sys
sample, merchant = json.loads(sys.argv[1]), sys.argv[2]
# E'' strings with \x3a for ':' — pgbench would read ":06" inside a literal as a variable.
q = lambda text: "E'" + text.replace("\\", "\\\\").replace("'", "''").replace(":", "\\x3a") + "'"
routing, event, order_event = q(sample["routing"]), q(sample["event"]), q(sample["order_event"])
order_columns = ("order_no, merchant_id, amount, currency, status, paid_amount, refunded_amount, "
                 "array_to_json(payments)::text AS payments, version, created_at, updated_at")
print(f"""\\set n random(1, 9000000000000000000)
INSERT INTO bench_pins (merchant_id, idempotency_key, request_hash, decision, amount_base, counted_at) VALUES ('{merchant}', :n, 'a3f1c9e0b7d24c5e8f6a1b2c3d4e5f60a3f1c9e0b7d24c5e8f6a1b2c3d4e5f60', {routing}::jsonb, 1000, now()) ON CONFLICT (merchant_id, idempotency_key) DO UPDATE SET merchant_id = bench_pins.merchant_id RETURNING request_hash, decision::text, amount_base, counted_at, (xmax = 0);
INSERT INTO bench_channel_calls (channel, idempotency_key, operation, resource, amount, currency, answer, reference) VALUES ('stripe', 'pay_' || :n || chr(58) || 'authorize', 'authorize', 'pay_' || :n, 1000, 'USD', 'succeed', 'sbx_stripe_pay_' || :n) ON CONFLICT (channel, idempotency_key) DO UPDATE SET calls = bench_channel_calls.calls + 1, last_at = now() RETURNING answer, reference, (xmax = 0);
BEGIN;
SELECT pg_advisory_xact_lock_shared(hashtext('pf' || chr(58) || 'limits'), hashtext('{merchant}'));
INSERT INTO bench_inbox (merchant_id, idempotency_key, command_id, command_type, request_hash, created_at) VALUES ('{merchant}', :n, :n, 'payment.create', 'a3f1c9e0b7d24c5e8f6a1b2c3d4e5f60a3f1c9e0b7d24c5e8f6a1b2c3d4e5f60', now()) ON CONFLICT (merchant_id, idempotency_key) DO NOTHING;
INSERT INTO bench_orders (merchant_id, order_no, amount, currency, status, version, created_at, updated_at) VALUES ('{merchant}', 'order-' || :n, 1000, 'USD', 'created', 0, now(), now()) ON CONFLICT (merchant_id, order_no) DO NOTHING RETURNING {order_columns};
INSERT INTO bench_payments (payment_no, merchant_id, order_no, amount, amount_base, currency, country, pay_method, channel, channel_ref, routing, channel_fee, status, subject, metadata, customer, command_id, version, created_at, updated_at, limit_key, counted_at, succeeded_at) VALUES ('pay_' || :n, '{merchant}', 'order-' || :n, 1000, 1000, 'USD', 'US', 'card', 'stripe', 'sbx_stripe_pay_' || :n, {routing}::jsonb, 59, 'succeeded', NULL, '{{}}'::jsonb, NULL, :n, 1, now(), now(), :n, now(), now());
INSERT INTO bench_limit_entries (merchant_id, limit_key, counted_at, amount, at, kind, ref) VALUES ('{merchant}', :n, now(), 1000, now(), 'reserve', 'pay_' || :n);
UPDATE bench_orders SET amount = 1000, currency = 'USD', status = 'paid', paid_amount = 1000, refunded_amount = 0, payments = ARRAY['pay_' || :n], version = 1, updated_at = now() WHERE merchant_id = '{merchant}' AND order_no = 'order-' || :n;
WITH recorded AS (UPDATE bench_inbox SET outcome_type = 'payment.succeeded', outcome_routing_key = 'm.{merchant}.payment.succeeded', outcome_event = {event} WHERE merchant_id = '{merchant}' AND idempotency_key = :n::text) INSERT INTO bench_outbox (event_id, event_type, exchange, routing_key, resource_key, correlation_id, body, created_at, lease_until) VALUES (:n::text, 'payment.succeeded', 'payfleet.events', 'm.{merchant}.payment.succeeded', 'payment' || chr(58) || 'pay_' || :n, :n::text, {event}, now(), now() + interval '15 seconds') RETURNING id;
INSERT INTO bench_outbox (event_id, event_type, exchange, routing_key, resource_key, correlation_id, body, created_at, lease_until) VALUES (:n::text || 'o', 'order.updated', 'payfleet.events', 'm.{merchant}.order.updated', 'order' || chr(58) || '{merchant}' || chr(58) || 'order-' || :n, :n::text, {order_event}, now(), now() + interval '15 seconds') RETURNING id;
COMMIT;""")
PY
pgbench_out=$(pgbench_checked -n -M prepared -c 8 -j 2 -T "$seconds" -f "$script" "$PAYFLEET_DATABASE_URL")
rm -f "$script"
pg_tps=$(grep -oE 'tps = [0-9.]+' <<<"$pgbench_out" | head -1 | awk '{print $3}')
pg_lat=$(grep -oE 'latency average = [0-9.]+' <<<"$pgbench_out" | awk '{print $4}')
psql_ -c "TRUNCATE bench_inbox, bench_payments, bench_outbox, bench_limit_entries, bench_pins, bench_channel_calls, bench_orders"
echo "pgbench: $pg_tps tx/s, average latency $pg_lat ms" >&2

section "2/7 raw broker: quorum queue, persistent 300-byte messages"
broker=$("$bench" broker --messages 30000)
pub_rate=$(json "['publish_per_second']" <<<"$broker")
con_rate=$(json "['consume_per_second']" <<<"$broker")
echo "$broker" >&2

section "3/7 authorize over AMQP: $commands commands, publish with confirms -> outcome event"
merchant=$("$bench" merchant)
merchant_id=$(json "['merchant_id']" <<<"$merchant")
api_key=$(json "['api_key']" <<<"$merchant")
amqp=$("$bench" authorize --commands "$commands" --merchant "$merchant_id")
echo "$amqp" >&2
amqp_rate=$(json "['per_second']" <<<"$amqp")
amqp_p50=$(json "['p50_ms']" <<<"$amqp")
amqp_p99=$(json "['p99_ms']" <<<"$amqp")

section "3a/7 authorize workers draining a queued backlog of $drain_commands commands, with 1, 2 and 3 replicas"
# Stops the supervised authorize worker, queues the backlog, starts 1/2/3 workers on it, and reads
# every process's CPU time and the workers' RSS from /proc (Benchmarks/drain.py); restarts it after.
drain_table=$(python3 "$root/Benchmarks/drain.py" --bench "$bench" --commands "$drain_commands" --replicas "$drain_replicas" \
  --pgbench-tps "$pg_tps" --json "$root/.state/local/drain.json")
echo "$drain_table" >&2

light_target=$(python3 -c "import sys; print(max(1.0, float(sys.argv[1]) / 4))" "$amqp_rate")
light_commands=$(python3 -c "import sys; print(max(500, int(float(sys.argv[1]) * 20)))" "$light_target")
section "3b/7 authorize over AMQP at light load: a quarter of the rate above ($light_target/s, on a schedule), $light_commands commands"
# Open loop: commands go out on a schedule whether or not their outcomes came, as traffic does.
# The drain above restarted the authorize worker: 300 commands first open its connections and
# fill its caches, so the measure is of a warm worker.
"$bench" authorize --commands 300 --in-flight 16 --merchant "$merchant_id" >/dev/null
light_trace=$(mktemp --suffix .csv)
amqp_light=$("$bench" authorize --commands "$light_commands" --rate "$light_target" --merchant "$merchant_id" --trace "$light_trace")
echo "$amqp_light" >&2
# Whether the slowest commands came together (a stall of the machine: a checkpoint, a vacuum after
# the drains) or spread over the run.
light_tail=$(python3 - "$light_trace" <<'PY'
import collections, csv, sys
rows = [(float(r["published_at_unix"]), float(r["latency_ms"])) for r in csv.DictReader(open(sys.argv[1]))]
start = min(t for t, _ in rows)
seconds = int(max(t for t, _ in rows) - start) + 1
slow = [int(t - start) for t, latency in rows if latency > 25]
if not slow:
    print("light load: no command over 25 ms")
else:
    by_second = collections.Counter(slow)
    worst, most = by_second.most_common(1)[0]
    print(f"light load: {len(slow)} of {len(rows)} commands over 25 ms ({100 * len(slow) / len(rows):.1f}%), in {len(by_second)} of the run's "
          f"{seconds} seconds; the most ({most}) in second {worst}")
PY
)
rm -f "$light_trace"
light_rate=$(json "['per_second']" <<<"$amqp_light")
light_p50=$(json "['p50_ms']" <<<"$amqp_light")
light_p99=$(json "['p99_ms']" <<<"$amqp_light")

section "4/7 authorize over HTTP: wrk, $http_connections connections, ${seconds}s"
# A premium merchant may make 10,000 requests a minute (~167/s): spread the load over 8.
keys=""
for _ in 1 2 3 4 5 6 7 8; do keys="$keys\"$(json "['api_key']" <<<"$("$bench" merchant)")\","; done
lua=$(mktemp --suffix .lua)
cat >"$lua" <<EOF2
local counter = 0
local keys = {$keys}
local thread_id = 0
local threads = {}
function setup(thread) thread:set("tid", #threads + 1); table.insert(threads, thread) end
function init(args) thread_id = tid or 0; math.randomseed(os.time() + thread_id) end
request = function()
  counter = counter + 1
  local key = string.format("bench-%d-%d-%d-%d", os.time(), thread_id, math.random(1, 1000000000), counter)
  local body = string.format('{"order_no":"%s","amount":1000,"currency":"USD","country":"US","pay_method":"card"}', key)
  return wrk.format("POST", "/api/v1/payments", {["Authorization"] = "Bearer " .. keys[(counter % #keys) + 1],
    ["Content-Type"] = "application/json", ["Idempotency-Key"] = key}, body)
end
EOF2
wrk_out=$(wrk -t2 -c"$http_connections" -d"${seconds}s" --latency -s "$lua" "http://127.0.0.1:$http_port" 2>&1)
rm -f "$lua"
echo "$wrk_out" >&2
http_rate=$(grep -oE 'Requests/sec: +[0-9.]+' <<<"$wrk_out" | awk '{print $2}')
to_ms() { python3 -c "import re,sys; v=sys.argv[1]; m=re.match(r'([0-9.]+)(us|ms|s)',v); print(float(m.group(1))*{'us':0.001,'ms':1,'s':1000}[m.group(2)] if m else 0)" "$1"; }
http_p50=$(to_ms "$(awk '/ 50%/{print $2}' <<<"$wrk_out")")
http_p99=$(to_ms "$(awk '/ 99%/{print $2}' <<<"$wrk_out")")
http_errors=$(grep -oE "Non-2xx or 3xx responses: [0-9]+" <<<"$wrk_out" | awk "{print \$5}" || true)

section "5/7 the rulebook: routing decisions, limit reservations, merchant lookups"
routing=$("$bench" routing)
echo "$routing" >&2
limits=$("$bench" limits --reservations 50000 --concurrency 16)
echo "$limits" >&2
# The same reserve script, 4 keys and 7 arguments, through redis-benchmark: a fresh reservation
# key per call (__rand_int__), the month's marker set, limits never reached.
month=$(date -u +%Y%m) day=$(date -u +%Y%m%d)
redis-cli -p "$redis_port" SET "pf:lim:{redis-benchmark}:loaded:$month" 1 EX 3600 >/dev/null
rb_out=$(redis-benchmark -h 127.0.0.1 -p "$redis_port" -c 16 -n 50000 -r 1000000000 --csv \
  EVAL "$(json "['script']" <<<"$limits")" 4 "pf:lim:{redis-benchmark}:d:$day" "pf:lim:{redis-benchmark}:m:$month" \
  "pf:lim:{redis-benchmark}:r:__rand_int__" "pf:lim:{redis-benchmark}:loaded:$month" \
  1000 1099511627776 1152921504606846976 1152921504606846976 90000 2700000 259200 2>&1)
echo "$rb_out" >&2
redis-cli -p "$redis_port" --scan --pattern "pf:lim:{redis-benchmark}:*" | xargs -r -n 1000 redis-cli -p "$redis_port" DEL >/dev/null
rb_rate=$(python3 -c "import csv,sys; rows=[r for r in csv.reader(sys.stdin) if len(r) > 1]; print(rows[-1][1])" <<<"$rb_out")
lookups=$("$bench" merchant-lookup --lookups 5000)
echo "$lookups" >&2

section "6/7 captures over AMQP ($holds holds, each captured in full) and pgbench running the capture transaction"
# The capture transaction's SQL, with rows of the real sizes: the inbox claim, the merchant's
# limit lock, the hold read and changed (FOR UPDATE, one conditional update), the capture's payment,
# its order held (the insert that finds it, then FOR UPDATE) and updated, the inbox outcome and
# three outbox rows (payment, hold, order); then the sandbox channel's own record (autocommit).
psql_ <<'SQL'
INSERT INTO bench_pre_authorizations (pre_auth_no, merchant_id, order_no, amount, amount_base, currency, country, pay_method,
    channel, routing, status, expires_at, command_id, limit_key, counted_at, version, created_at, updated_at)
SELECT 'pa_' || g, 'mch_bench', 'room-' || g, 100000000, 100000000, 'USD', 'US', 'card', 'stripe', '{}'::jsonb, 'authorized',
       now() + interval '7 days', 'c' || g, 'k' || g, now(), 1, now(), now()
FROM generate_series(1, 10000) AS g;
SQL
psql_ -c "INSERT INTO bench_orders (merchant_id, order_no, amount, currency, status, version, created_at, updated_at)
          SELECT '$(json "['merchant_id']" <<<"$bench_merchant")', 'room-' || g, 100000000, 'USD', 'created', 0, now(), now()
          FROM generate_series(1, 10000) AS g"
script=$(mktemp)
python3 - "$sample" "$(json "['merchant_id']" <<<"$bench_merchant")" >"$script" <<'PY'
import json, sys
sample, merchant = json.loads(sys.argv[1]), sys.argv[2]
q = lambda text: "E'" + text.replace("\\", "\\\\").replace("'", "''").replace(":", "\\x3a") + "'"
routing, event, order_event = q(sample["routing"]), q(sample["event"]), q(sample["order_event"])
order_columns = ("order_no, merchant_id, amount, currency, status, paid_amount, refunded_amount, "
                 "array_to_json(payments)::text AS payments, version, created_at, updated_at")
print(f"""\\set n random(1, 9000000000000000000)
\\set h random(1, 10000)
BEGIN;
INSERT INTO bench_inbox (merchant_id, idempotency_key, command_id, command_type, request_hash) VALUES ('{merchant}', :n, :n, 'preauth.capture', 'a3f1c9e0b7d24c5e8f6a1b2c3d4e5f60a3f1c9e0b7d24c5e8f6a1b2c3d4e5f60') ON CONFLICT DO NOTHING;
SELECT pg_advisory_xact_lock_shared(hashtext('pf' || chr(58) || 'limits'), hashtext('{merchant}'));
SELECT pre_auth_no, merchant_id, order_no, amount, amount_base, currency, country, pay_method, channel, channel_ref, routing::text, status, captured_amount, capture_count, released_amount, expires_at, failure_code, failure_message, subject, metadata::text, customer::text, limit_key, counted_at, version, created_at, updated_at FROM bench_pre_authorizations WHERE pre_auth_no = 'pa_' || :h AND merchant_id = 'mch_bench' FOR UPDATE;
UPDATE bench_pre_authorizations SET status = 'partially_captured', captured_amount = captured_amount + 1, capture_count = capture_count + 1, version = version + 1, updated_at = now() WHERE pre_auth_no = 'pa_' || :h AND expires_at > now();
INSERT INTO bench_payments (payment_no, merchant_id, order_no, amount, amount_base, currency, country, pay_method, channel, channel_ref, routing, channel_fee, status, subject, metadata, customer, command_id, version, created_at, updated_at, limit_key, counted_at, pre_auth_no) VALUES ('pay_' || :n, '{merchant}', 'room-' || :h, 1000, 1000, 'USD', 'US', 'card', 'stripe', 'sbx_stripe_pay_' || :n, {routing}::jsonb, 59, 'succeeded', NULL, '{{}}'::jsonb, NULL, :n, 1, now(), now(), :n, now(), 'pa_' || :h);
INSERT INTO bench_orders (merchant_id, order_no, amount, currency, status, version, created_at, updated_at) VALUES ('{merchant}', 'room-' || :h, 100000000, 'USD', 'created', 0, now(), now()) ON CONFLICT (merchant_id, order_no) DO NOTHING RETURNING {order_columns};
SELECT {order_columns} FROM bench_orders WHERE merchant_id = '{merchant}' AND order_no = 'room-' || :h FOR UPDATE;
UPDATE bench_orders SET amount = 100000000, currency = 'USD', status = 'paid', paid_amount = paid_amount + 1000, refunded_amount = 0, payments = payments || ('pay_' || :n), version = version + 1, updated_at = now() WHERE merchant_id = '{merchant}' AND order_no = 'room-' || :h;
WITH recorded AS (UPDATE bench_inbox SET outcome_type = 'payment.succeeded', outcome_routing_key = 'm.{merchant}.payment.succeeded', outcome_event = {event} WHERE merchant_id = '{merchant}' AND idempotency_key = :n::text) INSERT INTO bench_outbox (event_id, event_type, exchange, routing_key, resource_key, correlation_id, body) VALUES (:n::text, 'payment.succeeded', 'payfleet.events', 'm.{merchant}.payment.succeeded', 'payment:' || :n::text, :n::text, {event});
INSERT INTO bench_outbox (event_id, event_type, exchange, routing_key, resource_key, correlation_id, body) VALUES (:n::text || 'p', 'preauth.captured', 'payfleet.events', 'm.{merchant}.preauth.captured', 'preauth' || chr(58) || 'pa_' || :h, :n::text, {event});
INSERT INTO bench_outbox (event_id, event_type, exchange, routing_key, resource_key, correlation_id, body) VALUES (:n::text || 'o', 'order.updated', 'payfleet.events', 'm.{merchant}.order.updated', 'order' || chr(58) || 'room-' || :h, :n::text, {order_event});
COMMIT;
INSERT INTO bench_channel_calls (channel, idempotency_key, operation, resource, amount, currency, answer, reference) VALUES ('stripe', 'pa_' || :h || chr(58) || 'capture' || chr(58) || :n, 'capture', 'pa_' || :h, 1000, 'USD', 'succeed', 'sbx') ON CONFLICT (channel, idempotency_key) DO UPDATE SET calls = bench_channel_calls.calls + 1 RETURNING answer, reference, (xmax = 0);""")
PY
pgbench_capture=$(pgbench_checked -n -M prepared -c 8 -j 2 -T "$seconds" -f "$script" "$PAYFLEET_DATABASE_URL")
rm -f "$script"
psql_ -c "DROP TABLE IF EXISTS bench_inbox, bench_payments, bench_outbox, bench_limit_entries, bench_pins, bench_channel_calls, bench_pre_authorizations, bench_orders"
pg_capture_tps=$(grep -oE 'tps = [0-9.]+' <<<"$pgbench_capture" | head -1 | awk '{print $3}')
echo "pgbench (capture): $pg_capture_tps tx/s" >&2
capture=$("$bench" capture --holds "$holds" --merchant "$merchant_id")
echo "$capture" >&2
capture_rate=$(json "['per_second']" <<<"$capture")
capture_p50=$(json "['p50_ms']" <<<"$capture")
capture_p99=$(json "['p99_ms']" <<<"$capture")

section "7/7 a timeout sweep over $due due payments, and authorize p99 with and without it"
sweep_merchant=$(json "['merchant_id']" <<<"$("$bench" merchant)")
pending=$("$bench" pending --payments "$due" --merchant "$sweep_merchant")
echo "$pending" >&2
quiet=$("$bench" authorize --commands 3000 --in-flight 16 --merchant "$merchant_id")
echo "without the sweep: $quiet" >&2
sweep_file=$(mktemp)
"$bench" sweep --merchant "$sweep_merchant" >"$sweep_file" &
sweep_pid=$!
sleep 0.5
busy=$("$bench" authorize --commands 3000 --in-flight 16 --merchant "$merchant_id")
wait "$sweep_pid"
sweep=$(cat "$sweep_file")
rm -f "$sweep_file"
echo "during the sweep: $busy" >&2
echo "sweep: $sweep" >&2

python3 - "$pg_tps" "$pub_rate" "$con_rate" "$amqp_rate" "$amqp_p50" "$amqp_p99" "$http_rate" "$http_p50" "$http_p99" "${http_errors:-0}" \
    "$light_rate" "$light_p50" "$light_p99" "$pg_lat" <<'PY'
import sys
pg, pub, con, amqp, amqp50, amqp99, http, http50, http99, errors, light, light50, light99, pglat = sys.argv[1:]
pg, pub, con, amqp, http, light = map(float, (pg, pub, con, amqp, http, light))
rows = [
    ("pgbench: the authorize transaction's SQL (8 clients)", pg, "", "", "1.00 (baseline)"),
    ("broker: publish with confirms (quorum)", pub, "", "", ""),
    ("broker: consume + ack (quorum)", con, "", "", ""),
    ("authorize over AMQP (confirm -> outcome event), 256 in flight", amqp, amqp50, amqp99, f"{amqp / pg:.2f} of pgbench"),
    ("authorize over AMQP, light load (a quarter of the rate above)", light, light50, light99, f"goal p99 <= 25 ms"),
    (f"authorize over HTTP (201 with outcome; non-2xx: {errors})", http, http50, http99, f"{http / pg:.2f} of pgbench"),
]
print()
print(f"| {'measure':<58} | {'per second':>10} | {'p50 ms':>7} | {'p99 ms':>7} | {'ratio':<18} |")
print(f"|{'-'*60}|{'-'*12}|{'-'*9}|{'-'*9}|{'-'*20}|")
for name, rate, p50, p99, ratio in rows:
    p50 = f"{float(p50):.1f}" if p50 else ""
    p99 = f"{float(p99):.1f}" if p99 else ""
    print(f"| {name:<58} | {rate:>10,.0f} | {p50:>7} | {p99:>7} | {ratio:<18} |")
print(f"\nbroker ceiling for a consume-and-publish worker: about min(publish, consume)/2 = {min(pub, con) / 2:,.0f}/s")
print(f"authorize over AMQP vs pgbench: {amqp / pg:.0%} (goal: at least 50%)")
print(f"authorize over HTTP vs pgbench: {http / pg:.0%} (goal: at least 40%)")
print(f"light load p99: {float(light99):.1f} ms at {light:,.0f}/s (goal: at most 25 ms; pgbench's average transaction: {float(pglat):.1f} ms)")
PY
echo "$light_tail"

printf '%s\n' "$drain_table"

python3 - "$(json "['per_second']" <<<"$routing")" "$(json "['per_second']" <<<"$limits")" "$rb_rate" "$lookups" <<'PY'
import json, sys
routing, limits, rb = map(float, sys.argv[1:4])
lookups = json.loads(sys.argv[4])
print()
print(f"| {'rulebook':<58} | {'per second':>10} | {'p50 ms':>7} | {'p99 ms':>7} | {'ratio':<24} |")
print(f"|{'-'*60}|{'-'*12}|{'-'*9}|{'-'*9}|{'-'*26}|")
print(f"| {'routing decisions (library alone, one thread)':<58} | {routing:>10,.0f} | {'':>7} | {'':>7} | {'':<24} |")
print(f"| {'redis-benchmark: EVAL of the reserve script (16 clients)':<58} | {rb:>10,.0f} | {'':>7} | {'':>7} | {'1.00 (baseline)':<24} |")
print(f"| {'limit reservations through LimitLedger (16 in flight)':<58} | {limits:>10,.0f} | {'':>7} | {'':>7} | {f'{limits / rb:.2f} of redis-benchmark':<24} |")
for kind in ("cached", "uncached"):
    p = lookups[kind]
    name = "merchant lookup, " + ("Redis cache hit" if kind == "cached" else "PostgreSQL (no cache)")
    print(f"| {name:<58} | {'':>10} | {p['p50']:>7.2f} | {p['p99']:>7.2f} | {'':<24} |")
c, u = lookups["cached"]["p50"], lookups["uncached"]["p50"]
print(f"\nmerchant lookup: the cache answers in {c / u:.2f} of the database's time (p50)")
PY

python3 - "$pg_capture_tps" "$capture" "$sweep" "$quiet" "$busy" <<'PY'
import json, sys
pg = float(sys.argv[1])
capture, sweep, quiet, busy = (json.loads(a) for a in sys.argv[2:6])
print()
print(f"| {'lifecycle':<58} | {'per second':>10} | {'p50 ms':>7} | {'p99 ms':>7} | {'ratio':<24} |")
print(f"|{'-'*60}|{'-'*12}|{'-'*9}|{'-'*9}|{'-'*26}|")
print(f"| {'pgbench: the capture transaction (8 clients)':<58} | {pg:>10,.0f} | {'':>7} | {'':>7} | {'1.00 (baseline)':<24} |")
name = f"captures over AMQP (publish -> outcome), 256 in flight"
print(f"| {name:<58} | {capture['per_second']:>10,.0f} | {capture['p50_ms']:>7.1f} | {capture['p99_ms']:>7.1f} | {capture['per_second'] / pg:.2f} of pgbench{'':<9} |")
name = f"timeout sweep: {sweep['payments']:,} due payments in {sweep['seconds']:.1f} s"
print(f"| {name:<58} | {sweep['per_second']:>10,.0f} | {'':>7} | {'':>7} | {'':<24} |")
print(f"| {'authorize, 16 in flight, no sweep':<58} | {quiet['per_second']:>10,.0f} | {quiet['p50_ms']:>7.1f} | {quiet['p99_ms']:>7.1f} | {'1.00 (baseline p99)':<24} |")
ratio = busy['p99_ms'] / quiet['p99_ms'] if quiet['p99_ms'] else 0
print(f"| {'authorize, 16 in flight, during the sweep':<58} | {busy['per_second']:>10,.0f} | {busy['p50_ms']:>7.1f} | {busy['p99_ms']:>7.1f} | {f'{ratio:.2f} x p99 without':<24} |")
PY

if ((money_out)); then source "$root/Benchmarks/money-out.sh"; fi
