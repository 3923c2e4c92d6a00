# Benchmarks/money-out.sh — section 8 of Benchmarks/run.sh (sourced by it, with its variables:
# $bench, $http_port, psql_, json, section, $export_rows, $archive_rows, $merchant_id if set).

section "8/8 money out: exports, the archive, batch queries"
api=http://127.0.0.1:$http_port/api/v1
out_merchant=$("$bench" merchant)
out_id=$(json "['merchant_id']" <<<"$out_merchant")
out_key=$(json "['api_key']" <<<"$out_merchant")
# Payment numbers of this run: pay_b<8 hex of the merchant>_<day>_<i>.
out_prefix=pay_b$(printf '%s' "$out_id" | md5sum | cut -c1-8)
# The worker itself (its name), not the supervisor whose command line names it.
export_pid=$(pgrep -x payfleet-export | head -1 || true)
[[ -n "$export_pid" ]] || { echo "no payfleet-export process: is the local stack up with every worker?" >&2; exit 1; }

# seed_payments N DAY: N succeeded payments of the benchmark merchant on DAY, the size of real ones.
seed_payments() {
  psql_ -v merchant="$out_id" -v n="$1" -v day="$2" -v prefix="$out_prefix" <<'SQL'
INSERT INTO payments (payment_no, merchant_id, order_no, amount, currency, country, pay_method, channel, status, channel_fee,
    subject, metadata, command_id, created_at, updated_at, counted_at)
SELECT :'prefix' || '_' || :'day' || '_' || i, :'merchant', 'order-' || i, 1000 + i % 5000, 'USD', 'US', 'card', 'stripe', 'succeeded', 59,
    'Order ' || i || ', 2 items', jsonb_build_object('cart', 'c' || i), 'bench-' || i,
    :'day'::date + i * interval '80 ms', :'day'::date + i * interval '80 ms', :'day'::date
FROM generate_series(1, :n) i;
ANALYZE payments;
SQL
}

# export_run DAY: exports DAY through the API; prints {"rows", "seconds", "per_second", "bytes"}.
export_run() {
  local task start
  start=$(date +%s.%N)
  task=$(curl -fsS -X POST "$api/merchant/payments/export" -H "Authorization: Bearer $out_key" -H 'Content-Type: application/json' \
    -H "Idempotency-Key: bench-export-$1-$RANDOM$RANDOM" -d "{\"start_date\":\"$1\",\"end_date\":\"$1\",\"format\":\"csv\"}" | json "['task_id']")
  python3 - "$api/merchant/exports/$task" "$out_key" "$start" <<'PY'
import json, sys, time, urllib.request
url, key, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
while True:
    task = json.load(urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": "Bearer " + key})))
    if task["status"] in ("completed", "failed"):
        break
    time.sleep(0.2)
seconds = time.time() - start
print(json.dumps({"status": task["status"], "rows": task["row_count"], "bytes": task["size"], "seconds": seconds,
                  "per_second": (task["row_count"] or 0) / seconds}))
PY
}

# copy_run DAY: PostgreSQL's own CSV of the same rows, same order; prints seconds.
copy_run() {
  local start end
  start=$(date +%s.%N)
  psql_ -c "\\copy (SELECT payment_no, order_no, created_at, updated_at, status, currency, amount, refunded_amount, channel_fee, channel,
      pay_method, country, pre_auth_no, subject, failure_code, failure_message, metadata FROM payments
      WHERE merchant_id = '$out_id' AND created_at >= '$1'::date AND created_at < '$1'::date + 1 ORDER BY created_at, payment_no)
      TO '/dev/null' WITH CSV HEADER"
  end=$(date +%s.%N)
  python3 -c "print($end - $start)"
}
peak_rss_mb() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$export_pid/status"; }

small_rows=$((export_rows / 10))
small_day=2020-01-01 big_day=2020-01-02
echo "seeding $small_rows and $export_rows payments" >&2
seed_payments "$small_rows" "$small_day"
seed_payments "$export_rows" "$big_day"
rss_idle=$(peak_rss_mb)
copy_small=$(copy_run "$small_day")
export_small=$(export_run "$small_day")
rss_small=$(peak_rss_mb)
echo "export of $small_rows: $export_small (COPY ${copy_small}s; peak RSS ${rss_small} MB)" >&2
copy_big=$(copy_run "$big_day")
export_big=$(export_run "$big_day")
rss_big=$(peak_rss_mb)
echo "export of $export_rows: $export_big (COPY ${copy_big}s; peak RSS ${rss_big} MB)" >&2

archive_quiet='{"per_second": 0, "p50_ms": 0, "p99_ms": 0}' archive_busy=$archive_quiet archive_start=0 archive_end=1
if ((archive_rows > 0)); then
  echo "seeding $archive_rows audit_logs rows 200 days old" >&2
  psql_ -v n="$archive_rows" <<'SQL'
INSERT INTO audit_logs (action, target, operator, reason, detail, created_at)
SELECT 'tier.change', 'mch_bench_' || (i % 1000), 'bench', 'benchmark row ' || i, jsonb_build_object('i', i),
    now() - interval '200 days' + i * interval '1 ms'
FROM generate_series(1, :n) i;
ANALYZE audit_logs;
SQL
  lat_merchant=${merchant_id:-$(json "['merchant_id']" <<<"$("$bench" merchant)")}
  archive_quiet=$("$bench" authorize --commands 3000 --in-flight 16 --merchant "$lat_merchant")
  archive_start=$(date +%s.%N)
  "$(dirname "$bench")/payfleet" archive run --tables audit_logs >&2
  sleep 1
  archive_busy=$("$bench" authorize --commands 3000 --in-flight 16 --merchant "$lat_merchant")
  until [[ "$(psql_ -tA -c "SELECT count(*) FROM audit_logs WHERE created_at < now() - interval '180 days'")" == 0 ]]; do sleep 1; done
  archive_end=$(date +%s.%N)
  echo "archive: quiet $archive_quiet; during $archive_busy" >&2
fi

batch=$(python3 - "$api" "$out_key" "$out_prefix" "$small_day" "$small_rows" <<'PY'
import http.client, json, statistics, sys, time, urllib.parse
api, key, prefix, day, rows = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
url = urllib.parse.urlparse(api)
ids = [f"{prefix}_{day}_{i}" for i in range(1, min(rows, 100) + 1)]
headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
conn = http.client.HTTPConnection(url.hostname, url.port)
def call(method, path, body=None):
    conn.request(method, url.path + path, body=body, headers=headers)
    reply = conn.getresponse(); data = reply.read()
    assert reply.status == 200, (reply.status, data[:200])
    return data
batch_times, single_times = [], []
for _ in range(10):
    start = time.perf_counter(); found = json.loads(call("POST", "/payments/batch", json.dumps({"payment_nos": ids})))
    batch_times.append(time.perf_counter() - start)
    assert len(found["data"]) == len(ids)
    start = time.perf_counter()
    for payment_no in ids: call("GET", "/payments/" + payment_no)
    single_times.append(time.perf_counter() - start)
print(json.dumps({"ids": len(ids), "batch_ms": statistics.median(batch_times) * 1000, "singles_ms": statistics.median(single_times) * 1000}))
PY
)
echo "batch: $batch" >&2

python3 - "$export_small" "$copy_small" "$export_big" "$copy_big" "$rss_idle" "$rss_small" "$rss_big" "$archive_rows" \
    "$archive_start" "$archive_end" "$archive_quiet" "$archive_busy" "$batch" <<'PY'
import json, sys
small, copy_small, big, copy_big = json.loads(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
rss_idle, rss_small, rss_big = sys.argv[5:8]
archive_rows, start, end = int(sys.argv[8]), float(sys.argv[9]), float(sys.argv[10])
quiet, busy, batch = (json.loads(a) for a in sys.argv[11:14])
row = lambda name, rate, p50, p99, ratio: print(f"| {name:<58} | {rate:>10} | {p50:>7} | {p99:>7} | {ratio:<26} |")
print()
print(f"| {'money out':<58} | {'per second':>10} | {'p50 ms':>7} | {'p99 ms':>7} | {'ratio':<26} |")
print(f"|{'-'*60}|{'-'*12}|{'-'*9}|{'-'*9}|{'-'*28}|")
for label, export, copy in ((f"{small['rows']:,}", small, copy_small), (f"{big['rows']:,}", big, copy_big)):
    copy_rate = export["rows"] / copy
    row(f"COPY (SELECT ...) TO STDOUT WITH CSV, {label} rows", f"{copy_rate:,.0f}", "", "", "1.00 (baseline)")
    row(f"export of {label} payments (API: 202 -> completed)", f"{export['per_second']:,.0f}", "", "", f"{export['per_second'] / copy_rate:.2f} of COPY")
print(f"| {'export worker peak RSS (MB): idle / after 10% / after all':<58} | {f'{rss_idle} / {rss_small} / {rss_big}':>31} |{'':>28}|")
if archive_rows:
  row(f"archive of {archive_rows:,} audit_logs rows (500 a batch, 100 ms pause)", f"{archive_rows / (end - start):,.0f}", "", "", f"{end - start:.0f} s")
  row("authorize, 16 in flight, no archive", f"{quiet['per_second']:,.0f}", f"{quiet['p50_ms']:.1f}", f"{quiet['p99_ms']:.1f}", "1.00 (baseline p99)")
  ratio = busy["p99_ms"] / quiet["p99_ms"] if quiet["p99_ms"] else 0
  row("authorize, 16 in flight, during the archive", f"{busy['per_second']:,.0f}", f"{busy['p50_ms']:.1f}", f"{busy['p99_ms']:.1f}", f"{ratio:.2f} x p99 without")
row(f"100 single GET /payments/{{no}} (one connection)", "", f"{batch['singles_ms']:.1f}", "", "1.00 (baseline)")
row(f"POST /payments/batch with the same {batch['ids']} ids", "", f"{batch['batch_ms']:.1f}", "", f"{batch['singles_ms'] / batch['batch_ms']:.1f}x faster")
PY
