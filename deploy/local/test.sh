#!/usr/bin/env bash
# deploy/local/test.sh — build PayFleet and run its tests against a private stack.
#
# Usage: deploy/local/test.sh [SWIFT TEST ARGS...]     (e.g. --filter LimitLedgerTests)
#
# This is the project's test command (.ci/run calls it). It:
#   1. installs the Debian packages if one is missing (apt-get);
#   2. starts a fresh test stack, isolated from the one of up.sh, in
#      .state/test (wiped first): RabbitMQ on 127.0.0.1:5673 (node
#      payfleet-test@localhost, dist 25673, epmd 4370, no management UI),
#      PostgreSQL on 5433, Redis on 6380;
#   3. swift build --build-tests (tests and executables, debug, built once);
#   4. .build/debug/payfleet migrate and topology apply on the test stack;
#   5. swift test --skip-build with the arguments given;
#   (also: topology/check.py validates the JSON Schemas and AsyncAPI document)
#   6. on a full run (no arguments) that passed, the chaos phase: tests that
#      restart the broker, flush Redis or change fleet-wide settings, alone:
#      PAYFLEET_CHAOS_TESTS=1 swift test --skip-build --filter '[Cc]haos|FleetWide'
#      (PAYFLEET_CHAOS_FILTER; PAYFLEET_SKIP_CHAOS=1 skips it), then the chaos
#      harness's small run on its own private stack, every fault injected:
#      Benchmarks/chaos.sh --commands 3000 --bin-dir .build/debug
#      (PAYFLEET_CHAOS_COMMANDS; its logs go to .state/test/logs/chaos-harness);
#   7. stops the test stack whatever happened (its logs stay in
#      .state/test/logs until the next run) and exits with swift test's status.
#
# The tests find the stack through these variables, exported here:
#   PAYFLEET_AMQP_URL, PAYFLEET_DATABASE_URL, PAYFLEET_REDIS_URL,
#   PAYFLEET_PG_SOCKET_DIR (PostgreSQL's Unix socket; the URL goes over TCP)
#   PAYFLEET_RABBITMQ_NODE, PAYFLEET_RABBITMQ_HOME (HOME holding the Erlang
#   cookie), PAYFLEET_RABBITMQ_ENV (source it to run rabbitmqctl on the node),
#   PAYFLEET_PG_BIN (psql, pgbench), PAYFLEET_BIN_DIR (the debug executables),
#   PAYFLEET_ADMIN_TOKEN (unless already set).
#   PAYFLEET_MANAGEMENT_URL (RabbitMQ's management API, for broker users).
# Ports can be moved with PAYFLEET_TEST_{AMQP,DIST,EPMD,PG,REDIS,MGMT}_PORT.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/local/lib.sh
. "$HERE/lib.sh"

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
fi

STATE="$PAYFLEET_REPO/.state/test"
AMQP_PORT=${PAYFLEET_TEST_AMQP_PORT:-5673}
DIST_PORT=${PAYFLEET_TEST_DIST_PORT:-25673}
EPMD_PORT=${PAYFLEET_TEST_EPMD_PORT:-4370}
PG_PORT=${PAYFLEET_TEST_PG_PORT:-5433}
REDIS_PORT=${PAYFLEET_TEST_REDIS_PORT:-6380}
MGMT_PORT=${PAYFLEET_TEST_MGMT_PORT:-15673}
NODE=payfleet-test@localhost
CHAOS_FILTER=${PAYFLEET_CHAOS_FILTER:-[Cc]haos|FleetWide}
STARTED=$SECONDS

# shellcheck disable=SC2317 # called by the EXIT trap
stop_test_stack() {
    local status=$?
    # Executables the tests spawned (FleetProcess records each pid) must not outlive the run.
    if [[ -f "$STATE/test-pids" ]]; then
        while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$STATE/test-pids"
    fi
    section "stop the test stack"
    stop_servers "$STATE" || true
    log "stopped ($(elapsed)); total $((SECONDS - STARTED))s"
    return "$status"
}

# The long steps run in the background, in a process group of their own,
# while we `wait`: so SIGTERM or SIGINT reaches our trap at once (bash defers
# traps while a foreground command runs), and the trap can pass SIGTERM on to
# the step and everything it spawned before it exits and stops the stack.
CHILD=0

# shellcheck disable=SC2317 # called by the INT and TERM traps
on_signal() {
    if ((CHILD > 0)); then
        kill -TERM -- "-$CHILD" 2>/dev/null || kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    exit "$1"
}

# run CMD...: run CMD in the background and wait for it; its exit status.
run() {
    set -m
    "$@" &
    CHILD=$!
    set +m
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=0
    return "$rc"
}

section "packages"
ensure_packages
log "ok ($(elapsed))"

section "test stack (.state/test)"
stop_servers "$STATE" # whatever a killed run left behind
rm -rf "$STATE"
mkdir -p "$STATE"
trap stop_test_stack EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
start_servers "$STATE" "$AMQP_PORT" "$DIST_PORT" "$NODE" "$MGMT_PORT" "$EPMD_PORT" "$PG_PORT" "$REDIS_PORT"
log "stack up ($(elapsed))"

export PAYFLEET_AMQP_URL="amqp://payfleet:payfleet@127.0.0.1:$AMQP_PORT/%2F"
export PAYFLEET_DATABASE_URL="postgres://payfleet:payfleet@127.0.0.1:$PG_PORT/payfleet"
export PAYFLEET_PG_SOCKET_DIR="$STATE/pgsock"   # the same server through its Unix socket (up.sh's way)
export PAYFLEET_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export PAYFLEET_MANAGEMENT_URL="http://127.0.0.1:$MGMT_PORT"
export PAYFLEET_RABBITMQ_NODE=$NODE
export PAYFLEET_RABBITMQ_HOME="$STATE/rabbitmq/home"
export PAYFLEET_RABBITMQ_ENV="$STATE/rabbitmq.env"
export PAYFLEET_PG_BIN=$PG_BIN
export PAYFLEET_BIN_DIR="$PAYFLEET_REPO/.build/debug"
export PAYFLEET_ADMIN_TOKEN=${PAYFLEET_ADMIN_TOKEN:-test-admin-token}
export PAYFLEET_TEST_PIDS="$STATE/test-pids"

cd "$PAYFLEET_REPO"

section "swift build --build-tests"
run swift build --build-tests
log "built ($(elapsed))"

section "contract documents (topology/check.py: JSON Schemas, AsyncAPI, definitions)"
# A private virtualenv (kept across runs in .state/pyenv) with the validator's two packages.
PYENV="$PAYFLEET_REPO/.state/pyenv"
[[ -x "$PYENV/bin/python" ]] || run python3 -m venv "$PYENV"
run "$PYENV/bin/pip" install -q --disable-pip-version-check jsonschema pyyaml rfc3339-validator
run "$PYENV/bin/python" topology/check.py
# The ingress serves topology/openapi.yaml as JSON, generated into Sources/Ingress/OpenAPIDocument.swift.
run "$PYENV/bin/python" topology/openapi.py --check
log "done ($(elapsed))"

section "migrate and apply the topology"
run "$PAYFLEET_BIN_DIR/payfleet" migrate
run "$PAYFLEET_BIN_DIR/payfleet" topology apply
log "done ($(elapsed))"

section "swift test $*"
status=0
run swift test --skip-build "$@" || status=$?
log "swift test exited with $status ($(elapsed))"

# Chaos phase: tests that restart the broker run alone, after everything else
# passed, and only on a full run (not when arguments narrow it down).
if ((status == 0 && $# == 0)) && [[ "${PAYFLEET_SKIP_CHAOS:-0}" != 1 ]]; then
    section "swift test: chaos phase (PAYFLEET_CHAOS_TESTS=1, --filter $CHAOS_FILTER)"
    export PAYFLEET_CHAOS_TESTS=1
    run swift test --skip-build --no-parallel --filter "$CHAOS_FILTER" || status=$?
    log "chaos tests exited with $status ($(elapsed))"
    if ((status == 0)); then
        commands=${PAYFLEET_CHAOS_COMMANDS:-3000}
        section "chaos harness: Benchmarks/chaos.sh --commands $commands (seeded load, kill -9, broker/database/cache restarts)"
        run "$PAYFLEET_REPO/Benchmarks/chaos.sh" --commands "$commands" --bin-dir "$PAYFLEET_BIN_DIR" \
            --out "$STATE/logs/chaos-harness" || status=$?
        log "chaos harness exited with $status ($(elapsed))"
    fi
fi
exit "$status"
