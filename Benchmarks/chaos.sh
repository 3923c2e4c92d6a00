#!/usr/bin/env bash
# Benchmarks/chaos.sh — the chaos harness: a mixed command load against a private fleet while
# workers are killed and RabbitMQ, PostgreSQL and Redis are restarted, then the invariants.
#
# Usage: Benchmarks/chaos.sh --commands N [--seed S] [--kill-every SECONDS] [--no-faults] [--keep]
#                            [--bin-dir DIR] [--rate R] [--max-retries N] [--concurrency N] [--out DIR]
#
#   --commands N        commands to send (default 3000: about 2-3 minutes, the CI size)
#   --seed S            seed of the load and of the faults (default 1)
#   --kill-every S      kill -9 a random worker about every S seconds (default 5)
#   --no-faults         no kills and no server restarts (a baseline)
#   --keep              leave the stack up afterwards (stop it with the env below and
#                       deploy/local/down.sh); otherwise it is stopped and its state removed
#   --bin-dir DIR       the PayFleet executables (default .build/release; CI: .build/debug)
#   --rate R            commands a second (default N/50, between 50 and 1000)
#   --max-retries N     the workers' retry budget (default 3: 1 s, 5 s, 30 s; the fleet's own
#                       default of 5 adds 2 and 10 minutes, so a transient `53` payment would
#                       take 12 minutes to fail)
#   --concurrency N     the workers' PAYFLEET_CONCURRENCY (default: theirs, 32; each worker's
#                       PostgreSQL pool is concurrency + 2, a payment worker's side pool another
#                       concurrency / 4, against lib.sh's max_connections = 400)
#   --out DIR           where the logs go (default .state/chaos-runs/<UTC time>)
#   -h, --help          this text
#
# What it does:
#   1. installs the Python packages it needs (pika, psycopg, redis) into .state/pyenv;
#   2. starts a private stack with deploy/local/up.sh --no-build --no-demo, its own state dir and
#      ports (below), authorize and capture workers scaled to 2;
#   3. runs Benchmarks/chaos/run.py: merchants of every tier (USD and CNY), an event subscriber
#      on a durable quorum queue bound to `#`, the load (payments, pre-authorizations, captures,
#      cancels, refunds, signed notifies, per-merchant timeout sweeps on a test clock, two
#      exports, a settlement run, about 1% malformed commands; about 10% of it over HTTP), and
#      the faults (kill -9 of a worker every few seconds; RabbitMQ, PostgreSQL and Redis, the
#      latter without persistence, each restarted once); waits until every command has its
#      outcome; runs the invariant checker (Benchmarks/chaos/check.py, also usable on its own);
#      prints the tables;
#   4. stops the stack (deploy/local/down.sh) and removes its state, unless --keep.
# Exit status: 0 when every command got exactly one outcome and no invariant is violated.
#
# Logs in the out dir: merchants.json, commands.jsonl (every command sent), events.jsonl (every
# event delivery), faults.jsonl, check.json, up.log, stack-logs/ (the fleet's and the servers'
# logs, copied before the stack's state is removed). Check a kept stack again with
#   .state/pyenv/bin/python Benchmarks/chaos/check.py --state-dir .state/chaos \
#       --commands-log OUT/commands.jsonl --events-log OUT/events.jsonl
#
# Settings (environment; defaults in brackets) — its own, so it never meets a developer's stack
# (.state/local, 8080, 5672, ...) or the test stack (.state/test):
#   PAYFLEET_CHAOS_STATE_DIR [.state/chaos]   PAYFLEET_CHAOS_HTTP_PORT [8090]
#   PAYFLEET_CHAOS_AMQP_PORT [5680]  PAYFLEET_CHAOS_DIST_PORT [25680]  PAYFLEET_CHAOS_MGMT_PORT [15680]
#   PAYFLEET_CHAOS_EPMD_PORT [4380]  PAYFLEET_CHAOS_PG_PORT [5440]     PAYFLEET_CHAOS_REDIS_PORT [6390]
#   PAYFLEET_CHAOS_HEALTH_PORT_BASE [9200]  PAYFLEET_CHAOS_NODE [payfleet-chaos@localhost]
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
commands=3000 seed=1 kill_every=5 faults=1 keep=0 rate=0 max_retries=3 concurrency="" out=""
bin_dir="$ROOT/.build/release"
while (($# > 0)); do
    case "$1" in
        --commands) commands=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --kill-every) kill_every=$2; shift 2 ;;
        --no-faults) faults=0; shift ;;
        --keep) keep=1; shift ;;
        --bin-dir) bin_dir=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --max-retries) max_retries=$2; shift 2 ;;
        --concurrency) concurrency=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ "$commands" =~ ^[0-9]+$ && "$commands" -gt 0 ]] || { echo "--commands wants a positive number" >&2; exit 2; }
[[ "$bin_dir" = /* ]] || bin_dir="$ROOT/$bin_dir"
[[ -x "$bin_dir/payfleet" && -x "$bin_dir/payfleet-ingress" ]] || { echo "no PayFleet executables in $bin_dir" >&2; exit 2; }

STATE="${PAYFLEET_CHAOS_STATE_DIR:-$ROOT/.state/chaos}"
[[ "$STATE" = /* ]] || STATE="$ROOT/$STATE"
case "$(realpath -m "$STATE")" in
    "$(realpath -m "$ROOT/.state/local")" | "$(realpath -m "$ROOT/.state/test")" | "$(realpath -m "$ROOT/.state")" | "$(realpath -m "$ROOT")")
        echo "refusing to use $STATE: that is another stack's (or everybody's) state" >&2; exit 2 ;;
esac
export PAYFLEET_STATE_DIR="$STATE"
export PAYFLEET_HTTP_PORT=${PAYFLEET_CHAOS_HTTP_PORT:-8090}
export PAYFLEET_AMQP_PORT=${PAYFLEET_CHAOS_AMQP_PORT:-5680}
export PAYFLEET_AMQP_DIST_PORT=${PAYFLEET_CHAOS_DIST_PORT:-25680}
export PAYFLEET_MGMT_PORT=${PAYFLEET_CHAOS_MGMT_PORT:-15680}
export PAYFLEET_EPMD_PORT=${PAYFLEET_CHAOS_EPMD_PORT:-4380}
export PAYFLEET_PG_PORT=${PAYFLEET_CHAOS_PG_PORT:-5440}
export PAYFLEET_REDIS_PORT=${PAYFLEET_CHAOS_REDIS_PORT:-6390}
export PAYFLEET_HEALTH_PORT_BASE=${PAYFLEET_CHAOS_HEALTH_PORT_BASE:-9200}
export PAYFLEET_RABBITMQ_NODE=${PAYFLEET_CHAOS_NODE:-payfleet-chaos@localhost}
export PAYFLEET_BIN_DIR="$bin_dir"
export PAYFLEET_MAX_RETRIES=$max_retries
if [[ -n "$concurrency" ]]; then export PAYFLEET_CONCURRENCY=$concurrency; else unset PAYFLEET_CONCURRENCY; fi
# Whatever the caller's shell had for a developer stack must not leak into this one.
unset PAYFLEET_AMQP_URL PAYFLEET_DATABASE_URL PAYFLEET_REDIS_URL PAYFLEET_MANAGEMENT_URL PAYFLEET_ADMIN_TOKEN \
    PAYFLEET_CHANNEL_SECRET PAYFLEET_RABBITMQ_ENV PAYFLEET_WORKERS

out=${out:-$ROOT/.state/chaos-runs/$(date -u +%Y%m%dT%H%M%SZ)-seed$seed-n$commands}
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# The fleet finds topology/definitions.json in its working directory.
cd "$ROOT"
say() { printf '[chaos] %s\n' "$*" >&2; }

# ---------------------------------------------------------------- Python packages
PYENV="$ROOT/.state/pyenv"
[[ -x "$PYENV/bin/python" ]] || python3 -m venv "$PYENV"
if ! "$PYENV/bin/python" -c 'import pika, psycopg, redis' 2>/dev/null; then
    say "installing pika, psycopg, redis into $PYENV"
    "$PYENV/bin/pip" install -q --disable-pip-version-check pika 'psycopg[binary]' redis
fi

# ---------------------------------------------------------------- the private stack
stop_stack() {
    "$ROOT/deploy/local/down.sh" >>"$out/down.log" 2>&1 || true
    # The fleet's and the servers' logs outlive the stack, next to the run's own.
    [[ ! -d "$STATE/logs" ]] || cp -r "$STATE/logs" "$out/stack-logs" 2>/dev/null || true
    rm -rf "$STATE"
}
if [[ -d "$STATE" ]]; then
    say "stopping what an earlier run left in $STATE"
    "$ROOT/deploy/local/down.sh" >>"$out/down.log" 2>&1 || true
    rm -rf "$STATE"
fi
finish() {
    local status=$?
    if ((keep)); then
        say "stack kept: PAYFLEET_STATE_DIR=$STATE (ports: HTTP $PAYFLEET_HTTP_PORT, AMQP $PAYFLEET_AMQP_PORT," \
            "PostgreSQL $PAYFLEET_PG_PORT, Redis $PAYFLEET_REDIS_PORT); stop it with these variables and deploy/local/down.sh:"
        say "  PAYFLEET_STATE_DIR=$STATE PAYFLEET_AMQP_PORT=$PAYFLEET_AMQP_PORT PAYFLEET_EPMD_PORT=$PAYFLEET_EPMD_PORT deploy/local/down.sh"
    else
        say "stopping the stack and removing $STATE"
        stop_stack
    fi
    say "logs: $out"
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting a private stack in $STATE (HTTP $PAYFLEET_HTTP_PORT, AMQP $PAYFLEET_AMQP_PORT, PostgreSQL $PAYFLEET_PG_PORT," \
    "Redis $PAYFLEET_REDIS_PORT); log: $out/up.log"
started=$SECONDS
if ! "$ROOT/deploy/local/up.sh" --no-build --no-demo --scale authorize=2 --scale capture=2 >"$out/up.log" 2>&1; then
    tail -n 30 "$out/up.log" >&2
    say "the stack did not start"
    exit 1
fi
say "stack up in $((SECONDS - started)) s"
cat >"$STATE/chaos.json" <<EOF
{"amqp": $PAYFLEET_AMQP_PORT, "dist": $PAYFLEET_AMQP_DIST_PORT, "node": "$PAYFLEET_RABBITMQ_NODE", "mgmt": $PAYFLEET_MGMT_PORT,
 "epmd": $PAYFLEET_EPMD_PORT, "pg": $PAYFLEET_PG_PORT, "redis": $PAYFLEET_REDIS_PORT, "http": $PAYFLEET_HTTP_PORT}
EOF

args=(--state-dir "$STATE" --out "$out" --commands "$commands" --seed "$seed" --kill-every "$kill_every")
((faults)) || args+=(--no-faults)
[[ "$rate" == 0 ]] || args+=(--rate "$rate")
status=0
PYTHONDONTWRITEBYTECODE=1 "$PYENV/bin/python" "$ROOT/Benchmarks/chaos/run.py" "${args[@]}" || status=$?
say "total $((SECONDS - started)) s"
exit "$status"
