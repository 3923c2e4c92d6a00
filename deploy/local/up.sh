#!/usr/bin/env bash
# deploy/local/up.sh — run the whole PayFleet fleet on this machine.
#
# Usage: deploy/local/up.sh [--scale WORKER=N ...] [--servers-only] [--no-build] [--no-demo]
#
#   --scale WORKER=N  run N replicas of payfleet-WORKER (default 1 each);
#                     repeat for several workers, e.g. --scale authorize=3
#   --servers-only    start RabbitMQ, PostgreSQL and Redis and stop there
#                     (then `. .state/local/env` and run the executables yourself)
#   --no-build        skip `swift build -c release`; use the binaries there are
#   --no-demo         skip the demo (create a merchant and a payment)
#   -h, --help        this text
#
# What it does:
#   1. installs the Debian packages if one is missing (apt-get);
#   2. starts RabbitMQ (with the management UI), PostgreSQL and Redis in
#      parallel, on 127.0.0.1, with all state in .state/local (git-ignored);
#   3. swift build -c release; payfleet migrate; payfleet topology apply;
#   4. runs payfleet-ingress and every worker executable
#      (payfleet-authorize, -capture, -expire, -timeout, -settle, -archive,
#      -export, -clock) under deploy/local/supervise.sh, which restarts a
#      process 1 s after it dies; worker replicas get health/metrics ports
#      9101, 9102, ... (PAYFLEET_HEALTH_PORT);
#   5. waits for GET /readyz, then the demo: a merchant and a payment, and the
#      hotel deposit (a pre-authorization of 1,000.00, a capture of 300.00, the
#      rest cancelled, 50.00 refunded); then prints the endpoints, the admin
#      token, the channel secret and the README's walk-through as curl lines.
#
# The local stack runs in sandbox mode (PAYFLEET_SANDBOX=1): its channels are
# the sandbox ones, and sweep commands may carry "now" to move time, like
# Stripe's test clocks. The systemd and Kubernetes deployments leave it off.
#
# Running it again is harmless: servers that run are left alone, and the
# supervised processes are restarted on the fresh build (with the --scale
# given this time) — but only once the build and the migrations succeeded,
# so a broken build leaves the running fleet as it was.
# Stop everything with deploy/local/down.sh. Logs: .state/local/logs/.
#
# Settings (environment; defaults in brackets):
#   PAYFLEET_STATE_DIR [.state/local]: a second stack needs its own, and its own ports
#   PAYFLEET_HTTP_PORT [8080]  PAYFLEET_AMQP_PORT [5672]  PAYFLEET_AMQP_DIST_PORT [25672]
#   PAYFLEET_MGMT_PORT [15672] PAYFLEET_EPMD_PORT [4369]  PAYFLEET_RABBITMQ_NODE [payfleet@localhost]
#   PAYFLEET_PG_PORT [5432]    PAYFLEET_REDIS_PORT [6379] PAYFLEET_HEALTH_PORT_BASE [9101]
#   PAYFLEET_AMQP_URL, PAYFLEET_DATABASE_URL, PAYFLEET_REDIS_URL [built from the ports;
#                            PostgreSQL's through its Unix socket in the state dir]
#   PAYFLEET_ADMIN_TOKEN [generated once, kept in .state/local/admin-token]
#   PAYFLEET_CHANNEL_SECRET [generated once, kept in .state/local/channel-secret:
#                            the sandbox channels sign their notify bodies with it]
#   PAYFLEET_BIN_DIR [.build/release]   PAYFLEET_WORKERS [the list above]
#   PAYFLEET_SHUTDOWN_TIMEOUT [8: drain time on SIGTERM, within down.sh's 10 s]
#   PAYFLEET_SWEEP_CONCURRENCY [4], PAYFLEET_SWEEP_RATE [50 a second]: how fast the timeout
#                              and expire workers go through a sweep's commands
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/local/lib.sh
. "$HERE/lib.sh"

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------- settings

STATE="${PAYFLEET_STATE_DIR:-$PAYFLEET_REPO/.state/local}"
PID_DIR="$STATE/pids"
LOG_DIR="$STATE/logs"

HTTP_PORT=${PAYFLEET_HTTP_PORT:-8080}
AMQP_PORT=${PAYFLEET_AMQP_PORT:-5672}
DIST_PORT=${PAYFLEET_AMQP_DIST_PORT:-25672}
MGMT_PORT=${PAYFLEET_MGMT_PORT:-15672}
EPMD_PORT=${PAYFLEET_EPMD_PORT:-4369}
NODE=${PAYFLEET_RABBITMQ_NODE:-payfleet@localhost}
PG_PORT=${PAYFLEET_PG_PORT:-5432}
REDIS_PORT=${PAYFLEET_REDIS_PORT:-6379}
HEALTH_PORT_BASE=${PAYFLEET_HEALTH_PORT_BASE:-9101}
BIN_DIR=${PAYFLEET_BIN_DIR:-$PAYFLEET_REPO/.build/release}
read -r -a WORKERS <<<"${PAYFLEET_WORKERS:-authorize capture expire timeout settle archive export clock}"

export PAYFLEET_HTTP_PORT=$HTTP_PORT
export PAYFLEET_AMQP_URL=${PAYFLEET_AMQP_URL:-amqp://payfleet:payfleet@127.0.0.1:$AMQP_PORT/%2F}
# PostgreSQL runs beside the fleet, so the fleet reaches it through its Unix socket, as
# PostgreSQL's own tools do: libpq then neither loads TLS and Kerberos to offer them nor goes
# through TCP. Measured on the authorize worker's drain: peak RSS 38.8-39.2 MB against 42.2-42.8
# over 127.0.0.1, the same CPU per command. (PostgreSQL still listens on 127.0.0.1 too.)
pg_socket_dir=$STATE/pgsock
[[ $pg_socket_dir == /* ]] || pg_socket_dir=$PWD/$pg_socket_dir
pg_socket_dir=${pg_socket_dir//%/%25}
pg_socket_dir=${pg_socket_dir// /%20}
export PAYFLEET_DATABASE_URL=${PAYFLEET_DATABASE_URL:-postgres://payfleet:payfleet@/payfleet?host=$pg_socket_dir&port=$PG_PORT}
export PAYFLEET_REDIS_URL=${PAYFLEET_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}
export PAYFLEET_MANAGEMENT_URL=${PAYFLEET_MANAGEMENT_URL:-http://127.0.0.1:$MGMT_PORT}
export PAYFLEET_RABBITMQ_ENV="$STATE/rabbitmq.env"
# Drain time on SIGTERM: within the supervisors' 9 s and down.sh's 10 s.
export PAYFLEET_SHUTDOWN_TIMEOUT=${PAYFLEET_SHUTDOWN_TIMEOUT:-8}
# The local channels are the sandbox ones: sandbox mode on (sweeps may move time).
export PAYFLEET_SANDBOX=${PAYFLEET_SANDBOX:-1}

declare -A SCALE=()
SERVERS_ONLY=0
BUILD=1
DEMO=1

while (($# > 0)); do
    case "$1" in
        --scale)
            (($# >= 2)) || die "--scale needs WORKER=N"
            spec=$2
            shift 2
            ;;
        --scale=*)
            spec=${1#--scale=}
            shift
            ;;
        --servers-only) SERVERS_ONLY=1; shift; continue ;;
        --no-build) BUILD=0; shift; continue ;;
        --no-demo) DEMO=0; shift; continue ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    [[ "$spec" =~ ^([a-z0-9-]+)=([0-9]+)$ ]] || die "--scale wants WORKER=N, got '$spec'"
    name=${BASH_REMATCH[1]#payfleet-}
    [[ " ${WORKERS[*]} " == *" $name "* ]] || die "--scale: unknown worker '$name' (workers: ${WORKERS[*]})"
    SCALE[$name]=$((10#${BASH_REMATCH[2]}))
done

# ---------------------------------------------------------------- steps

# kept_secret VAR FILE: the value of environment variable VAR, else the one
# kept in .state/local/FILE (generated on the first run, readable by us only).
kept_secret() {
    local name=$1 file="$STATE/$2"
    if [[ -n "${!name:-}" ]]; then
        printf '%s' "${!name}"
        return
    fi
    if [[ ! -s "$file" ]]; then
        (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file")
    fi
    cat "$file"
}

# write_env_file: .state/local/env, to source in a shell that runs PayFleet
# executables or tests by hand against this stack.
write_env_file() {
    {
        echo "# PayFleet local stack (deploy/local/up.sh). Source it: . $STATE/env"
        printf 'export PAYFLEET_AMQP_URL=%q\n' "$PAYFLEET_AMQP_URL"
        printf 'export PAYFLEET_DATABASE_URL=%q\n' "$PAYFLEET_DATABASE_URL"
        printf 'export PAYFLEET_REDIS_URL=%q\n' "$PAYFLEET_REDIS_URL"
        printf 'export PAYFLEET_HTTP_PORT=%q\n' "$PAYFLEET_HTTP_PORT"
        printf 'export PAYFLEET_ADMIN_TOKEN=%q\n' "$PAYFLEET_ADMIN_TOKEN"
        printf 'export PAYFLEET_CHANNEL_SECRET=%q\n' "$PAYFLEET_CHANNEL_SECRET"
        printf 'export PAYFLEET_SANDBOX=%q\n' "$PAYFLEET_SANDBOX"
        printf 'export PAYFLEET_RABBITMQ_ENV=%q\n' "$PAYFLEET_RABBITMQ_ENV"
        printf 'export PAYFLEET_RABBITMQ_NODE=%q\n' "$NODE"
        printf 'export PAYFLEET_RABBITMQ_HOME=%q\n' "$STATE/rabbitmq/home"
        printf 'export PAYFLEET_PG_BIN=%q\n' "$PG_BIN"
    } >"$STATE/env"
    chmod 600 "$STATE/env"
}

# supervise NAME [ENV=VALUE ...] -- CMD...: start CMD under supervise.sh,
# detached, logging to logs/NAME.log.
supervise() {
    local name=$1
    shift
    local env=()
    while [[ "$1" != "--" ]]; do
        env+=("$1")
        shift
    done
    shift
    PAYFLEET_PID_DIR="$PID_DIR" PAYFLEET_STOP_TIMEOUT=9 \
        setsid env "${env[@]}" "$HERE/supervise.sh" "$name" "$LOG_DIR/$name.log" -- "$@" \
        </dev/null >>"$LOG_DIR/supervisors.log" 2>&1 &
}

# wait_http URL TIMEOUT_SECONDS: until URL answers 2xx.
wait_http() {
    local url=$1 timeout=$2
    local deadline=$((SECONDS + timeout))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# json_get JSON PATH: prints the value at a dotted PATH (e.g. merchant.merchant_id).
json_get() {
    python3 -c '
import json, sys
value = json.loads(sys.argv[1])
for key in sys.argv[2].split("."):
    value = value[key]
print(value if isinstance(value, str) else json.dumps(value))
' "$1" "$2"
}

# json_pretty: pretty-print stdin when it is JSON, else print it as it is.
json_pretty() {
    python3 -c '
import json, sys
text = sys.stdin.read()
try:
    print(json.dumps(json.loads(text), indent=2))
except ValueError:
    print(text)
'
}

# http_post URL TOKEN BODY [HEADER...]: POST JSON; sets HTTP_STATUS and HTTP_BODY.
http_post() {
    local url=$1 token=$2 body=$3
    shift 3
    local headers=(-H "Authorization: Bearer $token" -H "Content-Type: application/json")
    local h
    for h in "$@"; do headers+=(-H "$h"); done
    local out
    out="$(curl -sS --max-time 30 -w '\n%{http_code}' -X POST "$url" "${headers[@]}" -d "$body")" || out=$'\n000'
    HTTP_STATUS=${out##*$'\n'}
    HTTP_BODY=${out%$'\n'*}
}

# run_demo: create a merchant, then a payment with its API key, and show the
# answers; then the README's hotel deposit with an enterprise merchant.
run_demo() {
    local base="http://127.0.0.1:$HTTP_PORT"
    echo "POST /api/v1/admin/merchants"
    http_post "$base/api/v1/admin/merchants" "$PAYFLEET_ADMIN_TOKEN" \
        '{"name":"Demo Shop","tier":"business","base_currency":"USD","country":"US"}'
    echo "-> HTTP $HTTP_STATUS"
    json_pretty <<<"$HTTP_BODY"
    [[ "$HTTP_STATUS" == 2?? ]] || return 1
    DEMO_API_KEY="$(json_get "$HTTP_BODY" api_key)" || return 1
    DEMO_MERCHANT="$(json_get "$HTTP_BODY" merchant.merchant_id)" || return 1
    (umask 077 && printf '%s\n' "$DEMO_API_KEY" >"$STATE/demo-api-key")

    echo
    echo "POST /api/v1/payments (merchant $DEMO_MERCHANT)"
    http_post "$base/api/v1/payments" "$DEMO_API_KEY" \
        "{\"order_no\":\"demo-$(date +%s)\",\"amount\":5000,\"currency\":\"USD\",\"country\":\"US\",\"pay_method\":\"card\"}" \
        "Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)"
    echo "-> HTTP $HTTP_STATUS"
    json_pretty <<<"$HTTP_BODY"
    [[ "$HTTP_STATUS" == 2?? ]] || return 1
    run_hotel_deposit
}

# demo_step TITLE PATH TOKEN BODY: one POST of the walk-through, shown on one
# line; fails unless it answered 201.
demo_step() {
    local title=$1 path=$2 token=$3 body=$4
    http_post "http://127.0.0.1:$HTTP_PORT$path" "$token" "$body" "Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)"
    printf '  %-36s -> HTTP %s  %s\n' "$title" "$HTTP_STATUS" "$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
r = r.get("merchant", r)
keys = ["merchant_id", "tier", "payment_no", "pre_auth_no", "status", "amount", "captured_amount", "released_amount",
        "refunded_amount", "code"]
print(" ".join(f"{k}={r[k]}" for k in keys if r.get(k) is not None))
' "$HTTP_BODY" 2>/dev/null || echo "$HTTP_BODY")"
    [[ "$HTTP_STATUS" == 201 ]]
}

# run_hotel_deposit: the README's walk-through: an enterprise hotel holds
# 1,000.00, captures 300.00, cancels the rest, and refunds 50.00.
run_hotel_deposit() {
    echo
    echo "The hotel deposit:"
    demo_step "POST /admin/merchants (enterprise)" /api/v1/admin/merchants "$PAYFLEET_ADMIN_TOKEN" \
        '{"name":"Seaside Hotel","tier":"enterprise","base_currency":"USD","country":"US"}' || return 1
    HOTEL_API_KEY="$(json_get "$HTTP_BODY" api_key)" || return 1
    (umask 077 && printf '%s\n' "$HOTEL_API_KEY" >"$STATE/demo-hotel-api-key")
    demo_step "authorize 1,000.00" /api/v1/merchant/pre-auth "$HOTEL_API_KEY" \
        '{"order_no":"room-1208","amount":100000,"currency":"USD","country":"US","pay_method":"card"}' || return 1
    local pre_auth_no payment_no
    pre_auth_no="$(json_get "$HTTP_BODY" pre_auth_no)" || return 1
    demo_step "capture 300.00" /api/v1/merchant/pre-auth/capture "$HOTEL_API_KEY" \
        "{\"pre_auth_no\":\"$pre_auth_no\",\"amount\":30000}" || return 1
    payment_no="$(json_get "$HTTP_BODY" payment_no)" || return 1
    demo_step "cancel the rest" /api/v1/merchant/pre-auth/cancel "$HOTEL_API_KEY" \
        "{\"pre_auth_no\":\"$pre_auth_no\",\"reason\":\"guest checked out\"}" || return 1
    demo_step "refund 50.00" "/api/v1/payments/$payment_no/refunds" "$HOTEL_API_KEY" \
        '{"amount":5000,"reason":"minibar credit"}'
}

print_servers() {
    cat <<EOF
  RabbitMQ                 $PAYFLEET_AMQP_URL
    management UI          http://127.0.0.1:$MGMT_PORT/  (login payfleet / payfleet)
    rabbitmqctl            $STATE/rabbitmqctl list_queues
  PostgreSQL               $PAYFLEET_DATABASE_URL
  Redis                    $PAYFLEET_REDIS_URL
  env for your shell       . $STATE/env
EOF
}

print_examples() {
    local base="http://127.0.0.1:$HTTP_PORT"
    cat <<EOF

Try it yourself (the README's walk-through; python3 reads the JSON answers):

  export BASE=$base ADMIN_TOKEN='$PAYFLEET_ADMIN_TOKEN' CHANNEL_SECRET='$PAYFLEET_CHANNEL_SECRET'
EOF
    sed -n '/^# walk-through: begin/,/^# walk-through: end/p' "$PAYFLEET_REPO/README.md" | sed -e '1d' -e '$d' -e 's/^/  /'
    cat <<EOF

Stop everything: deploy/local/down.sh
EOF
}

# ---------------------------------------------------------------- main

section "packages"
ensure_packages
log "ok ($(elapsed))"

section "servers"
mkdir -p "$STATE" "$PID_DIR" "$LOG_DIR"
start_servers "$STATE" "$AMQP_PORT" "$DIST_PORT" "$NODE" "$MGMT_PORT" "$EPMD_PORT" "$PG_PORT" "$REDIS_PORT"
PAYFLEET_ADMIN_TOKEN="$(kept_secret PAYFLEET_ADMIN_TOKEN admin-token)"
PAYFLEET_CHANNEL_SECRET="$(kept_secret PAYFLEET_CHANNEL_SECRET channel-secret)"
export PAYFLEET_ADMIN_TOKEN PAYFLEET_CHANNEL_SECRET
write_env_file
log "servers up ($(elapsed))"

if ((SERVERS_ONLY)); then
    echo
    echo "Servers are running:"
    print_servers
    exit 0
fi

if ((BUILD)); then
    section "${PAYFLEET_RELEASE_BUILD[*]}"
    (cd "$PAYFLEET_REPO" && "${PAYFLEET_RELEASE_BUILD[@]}")
    log "built ($(elapsed))"
fi
[[ -x "$BIN_DIR/payfleet" && -x "$BIN_DIR/payfleet-ingress" ]] ||
    die "no payfleet / payfleet-ingress in $BIN_DIR"

section "migrate and apply the topology"
"$BIN_DIR/payfleet" migrate
"$BIN_DIR/payfleet" topology apply
log "done ($(elapsed))"

section "processes"
stop_supervisors "$PID_DIR" 10
rm -f "$LOG_DIR/supervisors.log"

supervise payfleet-ingress -- "$BIN_DIR/payfleet-ingress"
processes=("payfleet-ingress|http://127.0.0.1:$HTTP_PORT  (/healthz /readyz /metrics; API under /api/v1)")
health_urls=()
port=$HEALTH_PORT_BASE
for worker in "${WORKERS[@]}"; do
    exe="$BIN_DIR/payfleet-$worker"
    if [[ ! -x "$exe" ]]; then
        warn "no $exe (not built?): payfleet-$worker not started"
        continue
    fi
    replicas=${SCALE[$worker]:-1}
    for ((i = 1; i <= replicas; i++)); do
        # The sweeping workers fan a sweep out into thousands of commands at once: paced, they
        # leave the servers to live authorizations while a sweep runs (nobody waits on a timeout).
        sweep_env=()
        case $worker in
            timeout | expire) sweep_env=(PAYFLEET_CONCURRENCY="${PAYFLEET_SWEEP_CONCURRENCY:-4}" PAYFLEET_MAX_RATE="${PAYFLEET_SWEEP_RATE:-50}") ;;
        esac
        supervise "payfleet-$worker-$i" PAYFLEET_HEALTH_PORT="$port" PAYFLEET_INSTANCE="$worker-$i" "${sweep_env[@]}" -- "$exe"
        processes+=("payfleet-$worker-$i|http://127.0.0.1:$port  (/healthz /readyz /metrics)")
        health_urls+=("http://127.0.0.1:$port/healthz")
        port=$((port + 1))
    done
done
log "started ${#processes[@]} supervised processes"

section "readiness"
if ! wait_http "http://127.0.0.1:$HTTP_PORT/readyz" 60; then
    warn "the ingress is not ready after 60 s; the end of $LOG_DIR/payfleet-ingress.log:"
    tail -n 40 "$LOG_DIR/payfleet-ingress.log" >&2 || true
    exit 1
fi
log "ingress ready ($(elapsed))"
for url in "${health_urls[@]}"; do
    wait_http "$url" 20 || warn "no answer from $url (see $LOG_DIR)"
done

DEMO_API_KEY=""
if ((DEMO)); then
    section "demo: a merchant and a payment"
    if ! run_demo; then
        warn "the demo failed; the end of the ingress and authorize logs:"
        tail -n 20 "$LOG_DIR/payfleet-ingress.log" >&2 || true
        tail -n 20 "$LOG_DIR/payfleet-authorize-1.log" >&2 2>/dev/null || true
        exit 1
    fi
fi

section "PayFleet is up"
for line in "${processes[@]}"; do
    printf '  %-24s %s\n' "${line%%|*}" "${line#*|}"
done
print_servers
echo "  logs                     $LOG_DIR/"
echo
echo "Admin token:    $PAYFLEET_ADMIN_TOKEN   (also in $STATE/admin-token)"
echo "Channel secret: $PAYFLEET_CHANNEL_SECRET   (also in $STATE/channel-secret; signs notify bodies)"
print_examples
