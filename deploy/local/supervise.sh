#!/usr/bin/env bash
# deploy/local/supervise.sh — keep one command running, like a tiny systemd.
#
# Usage: supervise.sh NAME LOGFILE -- CMD [ARGS...]
#
# Runs CMD with stdout and stderr appended to LOGFILE. Whenever CMD exits
# (crash, exit, kill -9) it is started again after 1 s, and the restart is
# logged to LOGFILE. SIGTERM or SIGINT to the supervisor is forwarded to CMD
# as SIGTERM; the supervisor waits for CMD to exit (SIGKILL after
# PAYFLEET_STOP_TIMEOUT seconds, default 30) and then exits itself.
#
# Pid files, in $PAYFLEET_PID_DIR (default <repo>/.state/local/pids):
#   NAME.pid        the supervisor
#   NAME.child.pid  the command it currently runs
#
# up.sh starts it detached (setsid); down.sh stops it by its pid file.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
fi
if (($# < 4)) || [[ "$3" != "--" ]]; then
    usage >&2
    exit 2
fi

name=$1
logfile=$2
shift 3
cmd=("$@")

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
pid_dir="${PAYFLEET_PID_DIR:-$repo/.state/local/pids}"
stop_timeout="${PAYFLEET_STOP_TIMEOUT:-30}"
mkdir -p "$pid_dir" "$(dirname "$logfile")"
pidfile="$pid_dir/$name.pid"
childfile="$pid_dir/$name.child.pid"

# now_ms: wall-clock milliseconds (SECONDS is too coarse for a stop deadline).
now_ms() {
    local us=${EPOCHREALTIME//[!0-9]/}
    echo $((10#$us / 1000))
}

say() {
    printf '%s [supervise %s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "$*" >>"$logfile"
}

stopping=0
child=0

# signal_child SIGNAL: signal the child's process group (it has its own, see
# `set -m` below), so that anything the command spawned goes too.
signal_child() {
    kill "-$1" -- "-$child" 2>/dev/null || kill "-$1" "$child" 2>/dev/null || true
}

on_stop() {
    stopping=1
    if ((child > 0)) && kill -0 "$child" 2>/dev/null; then
        say "stop requested: SIGTERM to pid $child"
        signal_child TERM
    fi
}
trap on_stop TERM INT
trap 'rm -f "$pidfile" "$childfile"' EXIT

# Job control: each command runs in a process group of its own.
set -m

echo "$$" >"$pidfile"
say "supervising: ${cmd[*]}"

starts=0
while ((stopping == 0)); do
    starts=$((starts + 1))
    # In the background so that the trap runs while we wait.
    "${cmd[@]}" >>"$logfile" 2>&1 </dev/null &
    child=$!
    echo "$child" >"$childfile"
    say "started pid $child (start #$starts)"

    # `wait` returns early (status > 128) when a trapped signal arrives. Until
    # a stop is requested we block in `wait`; after that we poll, so that a
    # command that ignores SIGTERM gets SIGKILL after the stop timeout.
    rc=0
    deadline=0
    while true; do
        if ((stopping == 0)); then
            if wait "$child"; then rc=0; else rc=$?; fi
            kill -0 "$child" 2>/dev/null || break
        else
            ((deadline > 0)) || deadline=$(($(now_ms) + stop_timeout * 1000))
            if ! kill -0 "$child" 2>/dev/null; then
                if wait "$child"; then rc=0; else rc=$?; fi
                break
            fi
            if (($(now_ms) >= deadline)); then
                say "pid $child ignored SIGTERM for ${stop_timeout}s: SIGKILL"
                signal_child KILL
            fi
            sleep 0.2 &
            wait $! || true
        fi
    done
    rm -f "$childfile"
    child=0

    if ((stopping)); then
        say "stopped (last exit status $rc)"
        break
    fi
    say "pid exited with status $rc; restarting in 1 s"
    sleep 1 &
    wait $! || true
done
