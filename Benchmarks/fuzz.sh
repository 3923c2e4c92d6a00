#!/usr/bin/env bash
# Benchmarks/fuzz.sh — hostile input at both doors of a running local stack (issue 9 §3).
#
#   1. HTTP: schemathesis runs against the ingress's own OpenAPI document
#      (GET /openapi.json), a fixed number of examples per operation, with every
#      check on but one: no 5xx, no response the document does not describe, no
#      schema-violating request accepted, no crash. Left out: "positive data
#      acceptance" (a schema-valid request must succeed), which business rules
#      contradict by design: a cursor this list never handed out, a reused
#      Idempotency-Key, a capture of a hold that does not exist, a date range
#      over 366 days are schema-valid and rightly refused.
#   2. AMQP: Benchmarks/fuzz/amqp_fuzz.py publishes malformed commands to every
#      command type (random bytes, truncated JSON, wrong types, huge numbers, deep
#      nesting, control characters, unknown types on known routing keys, ...) with
#      valid payments mixed in, then checks that every malformed message was parked
#      with its reason, every valid one done exactly once, and no worker restarted.
#
# Usage: Benchmarks/fuzz.sh [--examples N] [--messages N] [--seed S] [--http-only|--amqp-only]
#   --examples N   schemathesis examples per operation [25]
#   --messages N   malformed AMQP messages [100000]
# Needs the stack of deploy/local/up.sh (same PAYFLEET_* settings; PAYFLEET_STATE_DIR too).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
EXAMPLES=25
MESSAGES=100000
SEED=9
HTTP=1
AMQP=1
while (($# > 0)); do
    case "$1" in
        --examples) EXAMPLES=$2; shift 2 ;;
        --messages) MESSAGES=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --http-only) AMQP=0; shift ;;
        --amqp-only) HTTP=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

STATE=${PAYFLEET_STATE_DIR:-$REPO/.state/local}
[[ -f "$STATE/env" ]] || { echo "no stack: run deploy/local/up.sh first ($STATE/env is missing)" >&2; exit 1; }
# shellcheck source=/dev/null
. "$STATE/env"
BASE="http://127.0.0.1:${PAYFLEET_HTTP_PORT:-8080}"
PY="$REPO/.state/pyenv/bin/python"
[[ -x "$PY" ]] || python3 -m venv "$REPO/.state/pyenv"
"$REPO/.state/pyenv/bin/pip" install -q --disable-pip-version-check schemathesis pika 'psycopg[binary]'

merchant=$(curl -sf -X POST "$BASE/api/v1/admin/merchants" -H "Authorization: Bearer $PAYFLEET_ADMIN_TOKEN" \
    -H 'Content-Type: application/json' \
    -d '{"name":"Fuzz Target","tier":"premium","base_currency":"USD","country":"US"}')
MERCHANT_ID=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["merchant"]["merchant_id"])' <<<"$merchant")
API_KEY=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["api_key"])' <<<"$merchant")
echo "fuzzing as merchant $MERCHANT_ID"

# Restarts of the supervised processes so far (a crash shows up as one more).
restarts() { cat "$STATE"/logs/payfleet-*.log 2>/dev/null | grep -c 'restarting' || true; }
before=$(restarts)
status=0

if ((HTTP)); then
    echo "== HTTP: schemathesis, $EXAMPLES examples per operation"
    "$REPO/.state/pyenv/bin/schemathesis" run "$BASE/openapi.json" \
        --checks all --exclude-checks positive_data_acceptance \
        --max-examples "$EXAMPLES" --seed "$SEED" \
        --header "Authorization: Bearer $API_KEY" \
        --exclude-path-regex '/admin/|/notify$' \
        --generation-allow-x00=false \
        --report-junit-path "$STATE/schemathesis.xml" || status=1
fi

if ((AMQP)); then
    echo "== AMQP: $MESSAGES malformed commands"
    "$PY" "$HERE/fuzz/amqp_fuzz.py" --amqp-url "$PAYFLEET_AMQP_URL" --database-url "$PAYFLEET_DATABASE_URL" \
        --merchant "$MERCHANT_ID" --count "$MESSAGES" --seed "$SEED" || status=1
fi

after=$(restarts)
echo "worker restarts during the fuzzing: $((after - before))"
((after == before)) || status=1
exit $status
