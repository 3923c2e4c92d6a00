#!/usr/bin/env bash
# deploy/local/down.sh — stop what deploy/local/up.sh started.
#
# Usage: deploy/local/down.sh [--apps-only] [--wipe] [--test]
#
#   --apps-only  stop the supervised PayFleet processes, leave the servers up
#   --wipe       afterwards delete the stack's state (databases, queues, logs,
#                admin token)
#   --test       act on the test stack of test.sh (.state/test) instead; it
#                normally stops itself, this is for one left by a killed run
#   -h, --help   this text
#
# Everything is stopped by pid file, data dir or node name, never by process
# name: the supervisors get SIGTERM (they pass it on to their process and
# exit), SIGKILL after 10 s; then RabbitMQ (rabbitmqctl shutdown, and its
# epmd once no node uses it), PostgreSQL (pg_ctl stop -m fast) and Redis.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/local/lib.sh
. "$HERE/lib.sh"

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

STATE="${PAYFLEET_STATE_DIR:-$PAYFLEET_REPO/.state/local}"
APPS_ONLY=0
WIPE=0
while (($# > 0)); do
    case "$1" in
        --apps-only) APPS_ONLY=1 ;;
        --wipe) WIPE=1 ;;
        --test) STATE="$PAYFLEET_REPO/.state/test" ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
((APPS_ONLY == 0 || WIPE == 0)) || die "--wipe needs the servers stopped: drop --apps-only"

if [[ ! -d "$STATE" ]]; then
    log "nothing to stop: no $STATE"
    exit 0
fi

stop_supervisors "$STATE/pids" 10
if ((APPS_ONLY == 0)); then
    stop_servers "$STATE"
fi
if ((WIPE)); then
    rm -rf "$STATE"
    log "removed $STATE"
fi
log "stopped"
