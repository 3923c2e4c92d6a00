#!/usr/bin/env bash
# deploy/local/lib.sh — helpers shared by up.sh, down.sh and test.sh.
#
# Source it; it defines functions and runs nothing:
#
#   . deploy/local/lib.sh
#   ensure_packages
#   start_rabbitmq STATE_DIR AMQP_PORT DIST_PORT NODE_NAME [MGMT_PORT [EPMD_PORT]]
#   start_postgres STATE_DIR PORT
#   start_redis    STATE_DIR PORT
#   stop_rabbitmq  STATE_DIR      stop_postgres STATE_DIR      stop_redis STATE_DIR
#   wait_port PORT [TIMEOUT_SECONDS]
#
# Every server runs as a private instance on 127.0.0.1 with all of its state
# (data, logs, pid files, config) under the STATE_DIR it is given, so several
# stacks (the dev stack of up.sh, the test stack of test.sh, other people's
# nodes) coexist on one machine. Starts are idempotent: a server that is
# already running from that STATE_DIR is left alone. Stops go by pid file,
# data dir or node name, never by process name.
#
# Layout under STATE_DIR:
#   rabbitmq/        rabbitmq.conf, enabled_plugins, home/ (Erlang cookie),
#                    mnesia/, rabbitmq.pid
#   rabbitmq.env     source it (in a subshell) to run rabbitmqctl on this node
#   rabbitmqctl      wrapper: STATE_DIR/rabbitmqctl list_queues
#   pg/              PostgreSQL data dir (owned by postgres)
#   pgsock/          PostgreSQL unix socket dir
#   redis/           Redis data dir (appendonly) and redis.pid
#   logs/            rabbitmq/, postgres.log, redis.log
#
# On RabbitMQ: the /usr/sbin/rabbitmq* wrappers switch user and write to /var,
# so we call /usr/lib/rabbitmq/bin/* directly, as root, with a private HOME
# (it holds the Erlang cookie the server and rabbitmqctl must share) and a
# private epmd port per stack (epmd outlives its node and is shared by every
# node that uses the same port).

if [[ -n "${PAYFLEET_LIB_SOURCED:-}" ]]; then
    return 0
fi
PAYFLEET_LIB_SOURCED=1

# The repository root (deploy/local/..).
PAYFLEET_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
readonly PAYFLEET_REPO

readonly RABBITMQ_BIN=/usr/lib/rabbitmq/bin
readonly PG_BIN=/usr/lib/postgresql/15/bin

# Debian packages the stack and the Swift build need.
# libcurl4-openssl-dev: a release build links Foundation statically, and its URLSession
# (BrokerAdmin's calls to the management API) links libcurl.
PAYFLEET_PACKAGES=(rabbitmq-server redis-server postgresql
                   librabbitmq-dev libpq-dev libhiredis-dev libcurl4-openssl-dev curl python3-venv openssl)

# A release build links the Swift runtime and Foundation into each executable
# (`--static-swift-stdlib`, Swift's convention for servers on Linux): measured on the authorize
# worker's drain, 7% less CPU per command (direct calls instead of the dynamic linker's stubs for
# every retain and release) and 2-4 MB less RSS. `-cross-module-optimization` lets the compiler
# specialize and inline generic code across the project's modules (the C wrappers, Contract,
# Payments, the runtime): 6% less CPU per command in paired drains (0.400 and 0.413 ms against
# 0.436 and 0.432). Every release build uses the same flags, so that up.sh and the benchmarks
# share one build.
#
# Linked by the toolchain's lld, with two flags that take 5 MB off each process's RSS (the
# authorize worker: 42.6 -> 37.9 MB idle, 51 -> 45.6 MB at its peak in a drain):
# - `--no-export-dynamic`: the static stdlib's link arguments export every symbol of the Swift
#   runtime, Foundation and the project (35,600 symbols, 3.2 MB of tables the dynamic linker
#   reads at start); nothing looks them up, and the backtracer reads the ELF symbol table itself.
# - `-z pack-relative-relocs`: the 114,000 relative relocations of a position-independent
#   executable, 2.7 MB read once at start, become a 21 KB bitmap (DT_RELR; glibc 2.36, Debian 12).
#   Gold, the default linker, does not have it.
PAYFLEET_RELEASE_BUILD=(swift build -c release --static-swift-stdlib -Xswiftc -cross-module-optimization
                        -Xswiftc -use-ld=lld -Xlinker --no-export-dynamic
                        -Xlinker -z -Xlinker pack-relative-relocs)

# ---------------------------------------------------------------- logging

log()  { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
warn() { printf '[%s] WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# section TITLE: a visible header; remembers when it started for `elapsed`.
section() {
    SECTION_STARTED=$SECONDS
    printf '\n==== %s ====\n' "$*"
}

# elapsed: seconds since the last `section`.
elapsed() { printf '%ss' "$((SECONDS - ${SECTION_STARTED:-0}))"; }

# ---------------------------------------------------------------- packages

# ensure_packages: install the Debian packages PayFleet needs, but only when
# one of them is missing (apt-get update, then apt-get install -y).
ensure_packages() {
    local missing=() pkg status
    for pkg in "${PAYFLEET_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
    done
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    log "installing missing packages: ${missing[*]}"
    local sudo=()
    if ((EUID != 0)); then
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y "${missing[@]}"
}

# ---------------------------------------------------------------- processes

# port_open PORT: is something listening on 127.0.0.1:PORT?
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_port PORT [TIMEOUT_SECONDS]: wait until 127.0.0.1:PORT accepts
# connections (default 60 s). Returns 1 on timeout.
wait_port() {
    local port=$1 timeout=${2:-60}
    local deadline=$((SECONDS + timeout))
    until port_open "$port"; do
        if ((SECONDS >= deadline)); then
            warn "127.0.0.1:$port did not open within ${timeout}s"
            return 1
        fi
        sleep 0.1
    done
}

# pid_alive PIDFILE [CMDLINE_PATTERN]: prints the pid and succeeds when the
# pid file names a live process (whose command line contains the pattern,
# guarding against a recycled pid).
pid_alive() {
    local pidfile=$1 pattern=${2:-} pid
    [[ -s "$pidfile" ]] || return 1
    pid="$(head -n1 "$pidfile" | tr -dc '0-9')"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    if [[ -n "$pattern" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern" || return 1
    fi
    printf '%s\n' "$pid"
}

# wait_gone PID TIMEOUT_SECONDS: wait for a process to exit.
wait_gone() {
    local pid=$1 timeout=$2
    local deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# terminate PID [TIMEOUT_SECONDS]: SIGTERM, wait (default 10 s), then SIGKILL.
terminate() {
    local pid=$1 timeout=${2:-10}
    kill -TERM "$pid" 2>/dev/null || return 0
    if ! wait_gone "$pid" "$timeout"; then
        warn "pid $pid ignored SIGTERM for ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 5 || true
    fi
}

# ---------------------------------------------------------------- RabbitMQ

# start_rabbitmq STATE_DIR AMQP_PORT DIST_PORT NODE_NAME [MGMT_PORT [EPMD_PORT]]
# Starts a RabbitMQ node on 127.0.0.1 that loads topology/definitions.json at
# boot. MGMT_PORT empty or absent: no management plugin. EPMD_PORT defaults to
# $PAYFLEET_EPMD_PORT, else 4369; give each stack its own.
start_rabbitmq() {
    local state=$1 amqp_port=$2 dist_port=$3 node=$4 mgmt_port=${5:-}
    local epmd_port=${6:-${PAYFLEET_EPMD_PORT:-4369}}
    local dir="$state/rabbitmq"
    local logdir="$state/logs/rabbitmq"
    if pid_alive "$dir/rabbitmq.pid" beam >/dev/null; then
        log "rabbitmq $node already running (AMQP 127.0.0.1:$amqp_port)"
        return 0
    fi
    mkdir -p "$dir/home" "$dir/mnesia" "$logdir" || die "cannot create $dir"
    chmod 700 "$dir/home"
    : >"$dir/rabbitmq-env.conf" # empty: ignore /etc/rabbitmq/rabbitmq-env.conf

    {
        echo "# Written by deploy/local/lib.sh; rewritten on every start."
        echo "listeners.tcp.default = 127.0.0.1:$amqp_port"
        echo "load_definitions = $PAYFLEET_REPO/topology/definitions.json"
        echo "loopback_users = none"
        echo "# Commands are small; a 2 MiB publish is refused by the broker itself."
        echo "max_message_size = 1048576"
        if [[ -n "$mgmt_port" ]]; then
            echo "management.tcp.ip = 127.0.0.1"
            echo "management.tcp.port = $mgmt_port"
        fi
    } >"$dir/rabbitmq.conf"
    if [[ -n "$mgmt_port" ]]; then
        echo '[rabbitmq_management].' >"$dir/enabled_plugins"
    else
        echo '[].' >"$dir/enabled_plugins"
    fi

    write_rabbitmq_env "$state" "$node" "$epmd_port"

    if port_open "$amqp_port"; then
        die "127.0.0.1:$amqp_port is taken by a process that is not this stack's RabbitMQ ($dir)"
    fi

    log "starting rabbitmq $node (AMQP $amqp_port, dist $dist_port, epmd $epmd_port${mgmt_port:+, management $mgmt_port})"
    (
        # shellcheck source=/dev/null
        . "$state/rabbitmq.env"
        export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
        export RABBITMQ_NODE_PORT=$amqp_port
        export RABBITMQ_DIST_PORT=$dist_port
        export RABBITMQ_MNESIA_BASE="$dir/mnesia"
        export RABBITMQ_LOG_BASE="$logdir"
        export RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
        export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
        export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
        export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        cd "$dir" || exit 1
        setsid "$RABBITMQ_BIN/rabbitmq-server" </dev/null >>"$logdir/console.log" 2>&1 &
    )
    if ! wait_port "$amqp_port" 120; then
        tail -n 30 "$logdir/console.log" >&2 || true
        die "rabbitmq $node did not open port $amqp_port (logs: $logdir)"
    fi
    "$state/rabbitmqctl" await_startup --timeout 120 >/dev/null ||
        die "rabbitmq $node did not finish booting (logs: $logdir)"
    log "rabbitmq $node ready"
}

# write_rabbitmq_env STATE_DIR NODE_NAME EPMD_PORT: writes STATE_DIR/rabbitmq.env
# (exports for rabbitmqctl) and the STATE_DIR/rabbitmqctl wrapper.
write_rabbitmq_env() {
    local state=$1 node=$2 epmd_port=$3
    local dir="$state/rabbitmq"
    {
        echo "# RabbitMQ node $node of the stack in $state."
        echo "# Source it in a subshell (it sets HOME to the dir holding the cookie):"
        echo "#   ( . $state/rabbitmq.env && rabbitmqctl list_queues )"
        printf 'export HOME=%q\n' "$dir/home"
        printf 'export PAYFLEET_RABBITMQ_HOME=%q\n' "$dir/home"
        printf 'export PAYFLEET_RABBITMQ_NODE=%q\n' "$node"
        printf 'export RABBITMQ_NODENAME=%q\n' "$node"
        printf 'export ERL_EPMD_PORT=%q\n' "$epmd_port"
        echo "export ERL_EPMD_ADDRESS=127.0.0.1"
        printf 'export RABBITMQ_CONF_ENV_FILE=%q\n' "$dir/rabbitmq-env.conf"
        echo "export RABBITMQ_CTL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'"
        # shellcheck disable=SC2016 # $PATH expands when the file is sourced
        printf 'export PATH=%q:"$PATH"\n' "$RABBITMQ_BIN"
    } >"$state/rabbitmq.env"
    cat >"$state/rabbitmqctl" <<EOF
#!/usr/bin/env bash
# rabbitmqctl for node $node (generated by deploy/local/lib.sh).
set -euo pipefail
. $(printf '%q' "$state/rabbitmq.env")
exec $RABBITMQ_BIN/rabbitmqctl -n "\$RABBITMQ_NODENAME" "\$@"
EOF
    chmod +x "$state/rabbitmqctl"
}

# stop_rabbitmq STATE_DIR: shut the node down (rabbitmqctl shutdown, then
# SIGTERM/SIGKILL by pid file if it hangs), then stop this stack's epmd if
# no other node is registered with it.
stop_rabbitmq() {
    local state=$1
    local dir="$state/rabbitmq" pid
    [[ -f "$state/rabbitmq.env" ]] || return 0
    if pid="$(pid_alive "$dir/rabbitmq.pid" beam)"; then
        log "stopping rabbitmq (pid $pid)"
        if ! timeout 60 "$state/rabbitmqctl" shutdown --timeout 50 >/dev/null 2>&1; then
            warn "rabbitmqctl shutdown failed; signalling pid $pid"
        fi
        terminate "$pid" 10
    fi
    rm -f "$dir/rabbitmq.pid"
    stop_epmd "$state"
}

# stop_epmd STATE_DIR: kill the epmd on this stack's port when no node is
# registered in it any more (epmd -kill refuses while nodes are alive, and
# we check first so we never disturb somebody else's node).
stop_epmd() {
    local state=$1
    (
        # shellcheck source=/dev/null
        . "$state/rabbitmq.env"
        local names
        names="$(epmd -port "$ERL_EPMD_PORT" -names 2>/dev/null)" || exit 0
        if grep -q '^name ' <<<"$names"; then
            log "epmd on port $ERL_EPMD_PORT still serves other nodes; left running"
        else
            epmd -port "$ERL_EPMD_PORT" -kill >/dev/null 2>&1 || true
        fi
    )
}

# ---------------------------------------------------------------- PostgreSQL

# pg_as_postgres CMD...: run a PostgreSQL tool as the postgres user.
pg_as_postgres() {
    runuser -u postgres -- "$@"
}

# ensure_traversable DIR USER: PostgreSQL runs as its own user and must reach
# its data dir inside the repository; a checkout under a private directory
# (e.g. mktemp -d, mode 700) would stop it. Grant search permission (o+x:
# enter, not list) on each ancestor that lacks it, and say so.
ensure_traversable() {
    local dir=$1 user=$2 path=""
    runuser -u "$user" -- test -x "$dir" && return 0
    local part parts
    IFS=/ read -r -a parts <<<"${dir#/}"
    for part in "${parts[@]}"; do
        path="$path/$part"
        if ! runuser -u "$user" -- test -x "$path"; then
            log "chmod o+x $path (so that user $user can reach $dir)"
            chmod o+x "$path" || die "cannot make $path traversable for $user"
        fi
    done
}

# start_postgres STATE_DIR PORT: initdb on first use (STATE_DIR/pg, owned by
# postgres), start on 127.0.0.1:PORT with a private socket dir, and make sure
# role payfleet (password payfleet) and database payfleet exist.
start_postgres() {
    local state=$1 port=$2
    local data="$state/pg" sock="$state/pgsock" logfile="$state/logs/postgres.log"
    mkdir -p "$state/logs" "$sock"
    touch "$logfile"
    chown postgres:postgres "$sock" "$logfile"
    chmod 755 "$state" "$state/logs"
    ensure_traversable "$state" postgres

    if [[ ! -s "$data/PG_VERSION" ]]; then
        log "initdb $data"
        mkdir -p "$data"
        chown postgres:postgres "$data"
        chmod 700 "$data"
        pg_as_postgres "$PG_BIN/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >"$state/logs/initdb.log" 2>&1 ||
            { cat "$state/logs/initdb.log" >&2; die "initdb failed"; }
    fi

    # A postmaster that was just killed can linger as a zombie (an empty
    # command line) until it is reaped; PostgreSQL will not start while the
    # pid in its lock file exists, so wait for it to go.
    local old_pid=""
    [[ -s "$data/postmaster.pid" ]] && old_pid="$(head -n1 "$data/postmaster.pid")"
    if pid_alive "$data/postmaster.pid" postgres >/dev/null; then
        log "postgres already running ($data)"
        wait_port "$port" 30 || die "postgres in $data runs but does not listen on 127.0.0.1:$port"
    else
        if [[ -n "$old_pid" ]]; then
            wait_gone "$old_pid" 15 || die "stale postgres pid $old_pid in $data/postmaster.pid"
        fi
        if port_open "$port"; then
            die "127.0.0.1:$port is taken by a process that is not this stack's PostgreSQL ($data)"
        fi
        log "starting postgres on 127.0.0.1:$port"
        # max_wal_size 4GB (default 1GB): under load the default checkpointed every 65-150 s
        # ("checkpoints are occurring too frequently"), and each checkpoint's final fsync stalled
        # every commit for 140-380 ms (authorize latency up to 341 ms at 197 commands/s). With
        # 4GB, checkpoints come every checkpoint_timeout (5 min), which also bounds recovery.
        pg_as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$logfile" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$sock -c max_connections=400 -c shared_preload_libraries=pg_stat_statements -c max_wal_size=4GB" \
            >/dev/null || { tail -n 30 "$logfile" >&2; die "postgres did not start"; }
    fi

    local psql=(pg_as_postgres "$PG_BIN/psql" -h "$sock" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt)
    "${psql[@]}" -c "DO \$\$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'payfleet') THEN
            CREATE ROLE payfleet LOGIN PASSWORD 'payfleet';
          END IF;
        END \$\$;" >/dev/null || die "could not create role payfleet"
    local exists
    exists="$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'payfleet'")" ||
        die "could not query postgres on port $port"
    if [[ -z "$exists" ]]; then
        "${psql[@]}" -c "CREATE DATABASE payfleet OWNER payfleet" >/dev/null ||
            die "could not create database payfleet"
    fi
    # Per-statement figures for benchmarks and operators (`SELECT ... FROM pg_stat_statements`).
    pg_as_postgres "$PG_BIN/psql" -h "$sock" -p "$port" -U postgres -d payfleet -v ON_ERROR_STOP=1 -qAt -c "
        CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
        GRANT pg_read_all_stats TO payfleet;
        GRANT EXECUTE ON FUNCTION pg_stat_statements_reset TO payfleet" >/dev/null ||
        die "could not set up pg_stat_statements"
    log "postgres ready (database payfleet)"
}

# stop_postgres STATE_DIR: pg_ctl stop -m fast on the stack's data dir.
stop_postgres() {
    local state=$1
    local data="$state/pg"
    [[ -s "$data/PG_VERSION" ]] || return 0
    if pg_as_postgres "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "stopping postgres ($data)"
        pg_as_postgres "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null
    fi
}

# ---------------------------------------------------------------- Redis

# start_redis STATE_DIR PORT: a daemonized redis-server on 127.0.0.1:PORT with
# an append-only file (fsync every second) in STATE_DIR/redis, and no RDB snapshots:
# the AOF already covers a restart (and PostgreSQL can rebuild what Redis holds),
# while a snapshot forks the whole dataset every minute under writes, which stalled
# Redis for 18-26 ms at 1.2-1.4 GB. Never evict: an evicted limit counter would
# read as zero.
start_redis() {
    local state=$1 port=$2
    local dir="$state/redis"
    mkdir -p "$dir" "$state/logs" || die "cannot create $dir"
    if pid_alive "$dir/redis.pid" redis-server >/dev/null; then
        log "redis already running (127.0.0.1:$port)"
        return 0
    fi
    if port_open "$port"; then
        die "127.0.0.1:$port is taken by a process that is not this stack's Redis ($dir)"
    fi
    log "starting redis on 127.0.0.1:$port"
    redis-server --bind 127.0.0.1 --port "$port" --daemonize yes \
        --pidfile "$dir/redis.pid" --dir "$dir" --logfile "$state/logs/redis.log" \
        --appendonly yes --appendfsync everysec --save "" --maxmemory-policy noeviction \
        >/dev/null || die "redis-server did not start"
    wait_port "$port" 30 || die "redis did not open port $port (log: $state/logs/redis.log)"
    log "redis ready"
}

# stop_redis STATE_DIR: SIGTERM (Redis fsyncs its AOF and exits) by pid file.
stop_redis() {
    local state=$1
    local pid
    if pid="$(pid_alive "$state/redis/redis.pid" redis-server)"; then
        log "stopping redis (pid $pid)"
        terminate "$pid" 15
    fi
}

# ---------------------------------------------------------------- supervisors

# stop_supervisors PID_DIR [TIMEOUT_SECONDS]: stop every supervise.sh whose
# pid file is in PID_DIR. Each gets SIGTERM (it forwards SIGTERM to its
# command and exits once the command did); whatever is still alive after the
# timeout (default 10 s) gets SIGKILL: the command's process group first,
# then the supervisor.
stop_supervisors() {
    local pid_dir=$1 timeout=${2:-10}
    [[ -d "$pid_dir" ]] || return 0
    local file name pid names=() pids=()
    for file in "$pid_dir"/*.pid; do
        [[ -e "$file" && "$file" != *.child.pid ]] || continue
        name="$(basename "$file" .pid)"
        if pid="$(pid_alive "$file" supervise.sh)"; then
            kill -TERM "$pid" 2>/dev/null || true
            names+=("$name")
            pids+=("$pid")
        else
            rm -f "$file" # stale
        fi
    done
    ((${#pids[@]} > 0)) || return 0
    log "stopping ${names[*]}"

    local deadline=$((SECONDS + timeout)) alive i child
    while true; do
        alive=0
        for pid in "${pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        ((alive && SECONDS < deadline)) || break
        sleep 0.1
    done
    for i in "${!pids[@]}"; do
        kill -0 "${pids[$i]}" 2>/dev/null || continue
        warn "${names[$i]} did not stop within ${timeout}s: SIGKILL"
        if child="$(pid_alive "$pid_dir/${names[$i]}.child.pid")"; then
            kill -KILL -- "-$child" 2>/dev/null || kill -KILL "$child" 2>/dev/null || true
        fi
        kill -KILL "${pids[$i]}" 2>/dev/null || true
        wait_gone "${pids[$i]}" 5 || true
        rm -f "$pid_dir/${names[$i]}.pid" "$pid_dir/${names[$i]}.child.pid"
    done
}

# ---------------------------------------------------------------- stacks

# start_servers STATE_DIR AMQP DIST NODE MGMT EPMD PG REDIS: start the three
# servers in parallel; returns 1 (having said why) if any of them failed.
start_servers() {
    local state=$1 amqp=$2 dist=$3 node=$4 mgmt=$5 epmd=$6 pg=$7 redis=$8
    mkdir -p "$state/logs" || die "cannot create $state/logs"
    local rc=0 pids=()
    start_rabbitmq "$state" "$amqp" "$dist" "$node" "$mgmt" "$epmd" & pids+=($!)
    start_postgres "$state" "$pg" & pids+=($!)
    start_redis "$state" "$redis" & pids+=($!)
    local pid
    for pid in "${pids[@]}"; do
        wait "$pid" || rc=1
    done
    if ((rc != 0)); then
        warn "a server did not start (logs: $state/logs)"
    fi
    return "$rc"
}

# stop_servers STATE_DIR: stop the three servers of a stack, in parallel.
stop_servers() {
    local state=$1
    stop_rabbitmq "$state" &
    local rabbit=$!
    stop_postgres "$state" || true
    stop_redis "$state" || true
    wait "$rabbit" || true
}
