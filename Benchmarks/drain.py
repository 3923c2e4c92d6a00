#!/usr/bin/env python3
"""Benchmarks/drain.py — the authorize workers draining a queued backlog, with what each process
spent on it.

Usage: Benchmarks/drain.py --bench BIN [--commands 20000] [--replicas 1,2,3] [--state-dir DIR]
                           [--pgbench-tps TPS] [--json FILE] [--worker-env KEY=VALUE ...]

On the local stack of deploy/local/up.sh (its state dir, default .state/local), for each replica
count K:
  1. stops the supervised authorize workers (their supervisors, by pid file), so nothing consumes
     `payfleet.authorize`; the first time, it first reads the idle RSS of the running worker;
  2. `payfleet-bench drain` queues N payment.create commands for a fresh benchmark merchant
     (publish with confirms) and subscribes to their outcome events;
  3. reads the CPU time of PostgreSQL (the postmaster and its backends), RabbitMQ and Redis, and
     the machine's busy time, from /proc;
  4. starts K authorize workers with the supervised worker's own command line and environment
     (health ports 9300 + i), and waits until every command has its outcome event;
  5. reads the CPU times again: CPU per command = CPU seconds spent during the drain / N, per
     process kind; the workers' peak RSS (VmHWM) and their RSS once idle again; and, from
     /proc/PID/task, the workers' CPU and context switches by thread, grouped by the threads'
     names: Swift's task pool, PostgreSQL (its event loop, postgres-io, and connect threads), Redis (redis-N), AMQP;
  6. stops the K workers.
Finally it starts the supervised workers again, as up.sh had them. It prints two tables (the
drain, then the workers' threads); with --pgbench-tps (run.sh passes its pgbench figure) the
rates also as a ratio of pgbench.

Nothing is asserted: it reports. The drain rate is outcomes / (last outcome - first outcome).
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def cpu_seconds(pid):
    """utime + stime of one process, in seconds (None when it is gone)."""
    stat = read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_group(name):
    """The worker's threads by what they serve: their names (NamedThread) without the index."""
    if name.endswith("default-qos") or name.endswith("qos.overcommit"):
        return "Swift tasks"
    base = re.sub(r"-[0-9]+$", "", name)
    if base.startswith("amqp-"):
        return "AMQP"
    if base in ("postgres-io", "postgres-connect"):
        return "PostgreSQL"
    return {"postgres": "PostgreSQL", "redis": "Redis"}.get(base, "other")


def threads_spent(pids):
    """CPU seconds and context switches (voluntary + involuntary) of the threads of `pids`, by group."""
    groups = {}
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
            base = f"/proc/{pid}/task/{tid}"
            # schedstat's first field is the thread's time on a CPU in nanoseconds. stat counts
            # whole clock ticks (10 ms) per thread: over 40 threads that each run a little, the
            # truncation lost up to 0.04 ms per command of a drain of 5,000.
            comm, schedstat, status = read(f"{base}/comm"), read(f"{base}/schedstat"), read(f"{base}/status")
            if comm is None or schedstat is None or status is None:
                continue
            cpu = int(schedstat.split()[0]) / 1e9
            switches = sum(int(line.split()[1]) for line in status.decode().splitlines()
                           if line.split(":")[0].endswith("ctxt_switches"))
            group = groups.setdefault(thread_group(comm.decode().strip()), [0.0, 0])
            group[0] += cpu
            group[1] += switches
    return groups


def status_kb(pid, key):
    text = read(f"/proc/{pid}/status")
    if text is None:
        return None
    for line in text.decode().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def children(parent):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read(f"/proc/{entry}/stat")
            if stat and int(stat[stat.rindex(b")") + 2:].split()[1]) == parent:
                found.append(int(entry))
    return found


def pid_from(path):
    text = read(path)
    if not text:
        return None
    pid = int(text.decode().split()[0])
    return pid if os.path.exists(f"/proc/{pid}") else None


def machine_busy():
    """(busy, total) jiffies of the whole machine."""
    fields = [int(x) for x in read("/proc/stat").decode().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class Servers:
    """The stack's PostgreSQL (postmaster and backends), RabbitMQ and Redis processes."""

    def __init__(self, state):
        self.postmaster = pid_from(os.path.join(state, "pg", "postmaster.pid"))
        self.rabbit = pid_from(os.path.join(state, "rabbitmq", "rabbitmq.pid"))
        self.redis = pid_from(os.path.join(state, "redis", "redis.pid"))
        if not (self.postmaster and self.rabbit and self.redis):
            sys.exit(f"drain.py: the stack in {state} is not running (no live PostgreSQL, RabbitMQ or Redis pid file)")

    def sample(self):
        """CPU seconds per server: each process's own time, PostgreSQL's summed over its backends."""
        postgres = {pid: cpu_seconds(pid) for pid in [self.postmaster] + children(self.postmaster)}
        return {"postgres": {pid: cpu for pid, cpu in postgres.items() if cpu is not None},
                "rabbitmq": cpu_seconds(self.rabbit) or 0.0, "redis": cpu_seconds(self.redis) or 0.0}

    @staticmethod
    def spent(before, after):
        # A backend that started during the drain counts from zero; one that ended is lost (the
        # workers' pools keep theirs for the whole drain).
        postgres = sum(cpu - before["postgres"].get(pid, 0.0) for pid, cpu in after["postgres"].items())
        return {"postgres": postgres, "rabbitmq": after["rabbitmq"] - before["rabbitmq"], "redis": after["redis"] - before["redis"]}


class Supervised:
    """The authorize workers up.sh supervises: stopped for the measure, started again after."""

    def __init__(self, state):
        self.pid_dir = os.path.join(state, "pids")
        self.entries = []
        for name in sorted(os.listdir(self.pid_dir)):
            if name.startswith("payfleet-authorize-") and name.endswith(".pid") and not name.endswith(".child.pid"):
                supervisor = pid_from(os.path.join(self.pid_dir, name))
                child = pid_from(os.path.join(self.pid_dir, name[:-4] + ".child.pid"))
                if supervisor and child:
                    self.entries.append({
                        "supervisor_cmdline": read(f"/proc/{supervisor}/cmdline").split(b"\0")[:-1],
                        "supervisor_env": read(f"/proc/{supervisor}/environ").split(b"\0")[:-1],
                        "worker_cmdline": read(f"/proc/{child}/cmdline").split(b"\0")[:-1],
                        "worker_env": read(f"/proc/{child}/environ").split(b"\0")[:-1],
                        "supervisor": supervisor, "child": child,
                    })
        if not self.entries:
            sys.exit("drain.py: no supervised payfleet-authorize worker is running (start the stack with deploy/local/up.sh)")

    def idle_rss_kb(self):
        return status_kb(self.entries[0]["child"], "VmRSS")

    def stop(self):
        for entry in self.entries:
            os.kill(entry["supervisor"], signal.SIGTERM)
        deadline = time.time() + 30
        while any(os.path.exists(f"/proc/{e['supervisor']}") for e in self.entries) and time.time() < deadline:
            time.sleep(0.2)

    def start(self):
        for entry in self.entries:
            env = dict(item.decode().split("=", 1) for item in entry["supervisor_env"] if b"=" in item)
            subprocess.Popen([a.decode() for a in entry["supervisor_cmdline"]], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def start_workers(template, count, log_dir, extra_env):
    env = dict(item.decode().split("=", 1) for item in template["worker_env"] if b"=" in item)
    env.update(extra_env)
    workers = []
    for index in range(count):
        env_i = dict(env, PAYFLEET_HEALTH_PORT=str(9300 + index), PAYFLEET_INSTANCE=f"drain-authorize-{index + 1}")
        log = open(os.path.join(log_dir, f"drain-authorize-{index + 1}.log"), "ab")
        workers.append(subprocess.Popen([a.decode() for a in template["worker_cmdline"]], env=env_i, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log))
    return workers


def stop_workers(workers):
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def bench_json(bench, *args):
    return json.loads(subprocess.run([bench, *args], check=True, capture_output=True, text=True).stdout)


def measure(bench, supervised, servers, count, commands, log_dir, extra_env):
    merchant = bench_json(bench, "merchant")["merchant_id"]
    drain = subprocess.Popen([bench, "drain", "--commands", str(commands), "--merchant", merchant],
                             stdout=subprocess.PIPE, text=True)
    queued = json.loads(drain.stdout.readline())
    print(f"[drain] {count} worker(s): {queued['queued']:,} commands queued "
          f"({queued['publish_per_second']:,.0f}/s); starting the workers", file=sys.stderr)
    before, busy_before = servers.sample(), machine_busy()
    workers = start_workers(supervised.entries[0], count, log_dir, extra_env)
    pids = [w.pid for w in workers]
    peak, peak_anon = {}, {}
    while drain.poll() is None:
        for pid in pids:
            rss, anon = status_kb(pid, "VmRSS"), status_kb(pid, "RssAnon")
            if rss:
                peak[pid] = max(peak.get(pid, 0), rss)
            if anon:
                peak_anon[pid] = max(peak_anon.get(pid, 0), anon)
        time.sleep(0.25)
    drained = json.loads(drain.stdout.readline() or "{}")
    worker_cpu = sum(cpu_seconds(pid) or 0.0 for pid in pids)
    by_thread = threads_spent(pids)
    after, busy_after = servers.sample(), machine_busy()
    time.sleep(5)
    idle_after = [status_kb(pid, "VmRSS") or 0 for pid in pids]
    idle_anon = [status_kb(pid, "RssAnon") or 0 for pid in pids]
    hwm = [status_kb(pid, "VmHWM") or 0 for pid in pids]
    stop_workers(workers)
    if drain.returncode != 0:
        sys.exit(f"drain.py: payfleet-bench drain failed ({drain.returncode}); the workers' logs are in {log_dir}")
    spent = Servers.spent(before, after)
    busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
    n = drained["outcomes"]
    return {
        "workers": count, "commands": n, "per_second": drained["per_second"], "drain_seconds": drained["drain_seconds"],
        "types": drained["types"], "machine_busy": busy,
        "cpu_ms_per_command": {"workers": worker_cpu / n * 1000, "postgres": spent["postgres"] / n * 1000,
                               "rabbitmq": spent["rabbitmq"] / n * 1000, "redis": spent["redis"] / n * 1000},
        # Where the workers' CPU went, by thread, and how often those threads were switched out.
        "worker_threads": {group: {"cpu_ms_per_command": cpu / n * 1000, "switches_per_command": switches / n}
                           for group, (cpu, switches) in sorted(by_thread.items())},
        "worker_rss_mb": {"peak": max(hwm + list(peak.values())) / 1024, "idle_after": max(idle_after) / 1024},
        # RSS counts the pages of shared libraries (Foundation, libcrypto...) that every process of
        # the fleet shares; RssAnon is the worker's own memory.
        "worker_private_mb": {"peak": max(list(peak_anon.values()) or [0]) / 1024, "idle_after": max(idle_anon) / 1024},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", required=True, help="the payfleet-bench executable")
    parser.add_argument("--commands", type=int, default=20000)
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--state-dir", default=os.environ.get("PAYFLEET_STATE_DIR", ".state/local"))
    parser.add_argument("--pgbench-tps", type=float, default=0.0)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker-env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for the measured workers (e.g. PAYFLEET_PG_PIPELINE=off)")
    args = parser.parse_args()

    state = os.path.abspath(args.state_dir)
    log_dir = os.path.join(state, "logs")
    servers, supervised = Servers(state), Supervised(state)
    idle = (supervised.idle_rss_kb() or 0) / 1024
    supervised.stop()
    results = []
    try:
        for count in [int(x) for x in args.replicas.split(",")]:
            results.append(measure(args.bench, supervised, servers, count, args.commands, log_dir,
                                   dict(item.split("=", 1) for item in args.worker_env)))
    finally:
        supervised.start()

    pg = args.pgbench_tps
    print()
    print(f"| authorize workers draining {args.commands:,} queued commands | per second | of pgbench | "
          "CPU ms/command: workers / PostgreSQL / RabbitMQ / Redis | machine busy | worker RSS MB: peak / idle after | "
          "of it private (RssAnon) MB: peak / idle after |")
    print("|---|---:|---:|---|---:|---|---|")
    for r in results:
        cpu = r["cpu_ms_per_command"]
        ratio = f"{r['per_second'] / pg:.2f}" if pg else ""
        print(f"| {r['workers']} worker(s) | {r['per_second']:,.0f} | {ratio} | "
              f"{cpu['workers']:.3f} / {cpu['postgres']:.3f} / {cpu['rabbitmq']:.3f} / {cpu['redis']:.3f} | "
              f"{r['machine_busy']:.0%} | {r['worker_rss_mb']['peak']:.1f} / {r['worker_rss_mb']['idle_after']:.1f} | "
              f"{r['worker_private_mb']['peak']:.1f} / {r['worker_private_mb']['idle_after']:.1f} |")
    groups = sorted({group for r in results for group in r["worker_threads"]},
                    key=lambda g: -results[0]["worker_threads"].get(g, {"cpu_ms_per_command": 0})["cpu_ms_per_command"])
    print()
    print("| the workers' threads: CPU ms / context switches, per command | " + " | ".join(groups) + " |")
    print("|---|" + "---|" * len(groups))
    for r in results:
        cells = []
        for group in groups:
            t = r["worker_threads"].get(group)
            cells.append(f"{t['cpu_ms_per_command']:.3f} / {t['switches_per_command']:.1f}" if t else "")
        print(f"| {r['workers']} worker(s) | " + " | ".join(cells) + " |")
    print(f"\nthe supervised worker's RSS when idle, before the measure: {idle:.1f} MB")
    if args.worker_env:
        print(f"the measured workers ran with {' '.join(args.worker_env)}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"idle_rss_mb": idle, "results": results}, handle, indent=1)


if __name__ == "__main__":
    main()
