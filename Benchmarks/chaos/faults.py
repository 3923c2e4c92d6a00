"""The fault injector of the chaos harness.

While the load runs it
- kills a random worker process with SIGKILL every few seconds (the pids are the supervisors'
  `<state>/pids/*.child.pid`; deploy/local/supervise.sh starts the worker again after 1 s);
- restarts each server once, at a point of the run given as a fraction of the commands that have
  their outcome (so the fleet is busy whatever the machine's speed; PostgreSQL at 20%, Redis at
  40%, RabbitMQ, the slowest to come back, at 60%):
  RabbitMQ (the node is stopped and started with deploy/local/lib.sh's stop_rabbitmq /
  start_rabbitmq), PostgreSQL (`pg_ctl restart -m fast`, as lib.sh runs pg_ctl) and Redis
  (`SHUTDOWN NOSAVE`, its append-only files removed, started again by lib.sh's start_redis: the
  limit counters are lost).
Every fault is recorded with its start and end time, to a JSON-lines file and in `self.faults`.
"""

import json
import os
import shutil
import signal
import subprocess
import threading
import time

from common import REPO

LIB = os.path.join(REPO, "deploy", "local", "lib.sh")
PG_BIN = "/usr/lib/postgresql/15/bin"
# How long a fault keeps disturbing the fleet after it ends (a killed worker is restarted by its
# supervisor after 1 s, then connects): a command alive in that window counts as "during faults".
KILL_WINDOW = 3.0
RESTART_SETTLE = 3.0


def lib(function, *args, timeout=300):
    """Runs a function of deploy/local/lib.sh in bash; (rc, output)."""
    script = f'. "{LIB}" && {function} "$@"'
    proc = subprocess.run(["bash", "-c", script, "lib", *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout, text=True)
    return proc.returncode, proc.stdout


class FaultInjector(threading.Thread):
    def __init__(self, state_dir, ports, rng, kill_every, progress, log, path,
                 restarts=(("postgres", 0.2), ("redis", 0.4), ("rabbitmq", 0.6)), kill_until=0.97, restart_gap=8.0):
        super().__init__(name="faults", daemon=True)
        self.state = state_dir
        self.ports = ports
        self.rng = rng
        self.kill_every = kill_every
        self.progress = progress  # () -> fraction of commands with an outcome
        self.log = log
        self.path = path
        self.restarts = list(restarts)
        self.kill_until = kill_until
        self.restart_gap = restart_gap
        self.restarting = None
        self.stopping = threading.Event()
        self.faults = []
        self.lock = threading.Lock()

    def stop(self):
        self.stopping.set()
        self.join(timeout=600)

    def windows(self):
        """(start, end) of the time each fault disturbed the fleet."""
        out = []
        with self.lock:
            for f in self.faults:
                if f["kind"] == "kill":
                    out.append((f["started_at"], f["started_at"] + KILL_WINDOW))
                else:
                    out.append((f["started_at"], (f.get("ended_at") or time.time()) + RESTART_SETTLE))
        return out

    def _record(self, fault):
        with self.lock:
            self.faults.append(fault)
        with open(self.path, "a") as f:
            f.write(json.dumps(fault) + "\n")

    def run(self):
        """Restarts here; kills on a thread of their own, so they go on while a server restarts."""
        killer = threading.Thread(target=self._kill_loop, name="kills", daemon=True)
        killer.start()
        last_restart_end = 0.0
        while not self.stopping.is_set():
            # Restarts at their point of the run, but never closer than `restart_gap` seconds
            # after the previous one ended (a short run would otherwise get them back to back).
            if self.restarts and self.progress() >= self.restarts[0][1] and time.time() - last_restart_end >= self.restart_gap:
                kind, _ = self.restarts[0]
                self.restarting = kind
                self._restart(kind)
                self.restarts.pop(0)
                self.restarting = None
                last_restart_end = time.time()
                continue
            self.stopping.wait(0.2)
        killer.join()

    def _kill_loop(self):
        if self.kill_every <= 0:
            return
        while not self.stopping.wait(self._interval()):
            if self.progress() < self.kill_until:
                self._kill()

    def pending_restarts(self):
        return [kind for kind, _ in self.restarts]

    def _interval(self):
        return self.kill_every * self.rng.uniform(0.7, 1.3)

    # ------------------------------------------------------------ kill -9 of a worker

    def _kill(self):
        pid_dir = os.path.join(self.state, "pids")
        try:
            names = sorted(n for n in os.listdir(pid_dir) if n.endswith(".child.pid") and not n.startswith("payfleet-ingress"))
        except OSError:
            return
        if not names:
            return
        # Mostly the payment workers (where the money moves), sometimes the others.
        busy = [n for n in names if n.split("-")[1] in ("authorize", "capture", "timeout")]
        name = self.rng.choice(busy if busy and self.rng.random() < 0.75 else names)
        try:
            pid = int(open(os.path.join(pid_dir, name)).read().strip() or 0)
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            return  # between a death and its restart: no pid right now
        if "payfleet-" not in cmdline:
            return  # a recycled pid: not ours
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            return
        at = time.time()
        self._record({"kind": "kill", "target": name[: -len(".child.pid")], "pid": pid, "started_at": at, "ended_at": at})

    # ------------------------------------------------------------ server restarts

    def _restart(self, kind):
        self.log(f"fault: restarting {kind}")
        started = time.time()
        ok, detail = getattr(self, "_restart_" + kind)()
        ended = time.time()
        self._record({"kind": "restart", "target": kind, "started_at": started, "ended_at": ended, "ok": ok,
                      "detail": detail[-500:]})
        self.log(f"fault: {kind} restarted in {ended - started:.1f} s" + ("" if ok else f" (FAILED: {detail[-300:]})"))

    def _restart_rabbitmq(self):
        p = self.ports
        rc1, out1 = lib("stop_rabbitmq", self.state)
        rc2, out2 = lib("start_rabbitmq", self.state, p["amqp"], p["dist"], p["node"], p["mgmt"], p["epmd"])
        return rc1 == 0 and rc2 == 0, out1 + out2

    def _restart_postgres(self):
        data = os.path.join(self.state, "pg")
        logfile = os.path.join(self.state, "logs", "postgres.log")
        # restart reuses the options of the last start (postmaster.opts): port, socket dir, ...
        proc = subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/pg_ctl", "-D", data, "-l", logfile,
                               "-m", "fast", "-w", "-t", "120", "restart"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, timeout=180)
        return proc.returncode == 0, proc.stdout

    def _restart_redis(self):
        port = self.ports["redis"]
        pidfile = os.path.join(self.state, "redis", "redis.pid")
        try:
            pid = int(open(pidfile).read().strip())
        except (OSError, ValueError):
            pid = None
        subprocess.run(["redis-cli", "-p", str(port), "SHUTDOWN", "NOSAVE"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
        deadline = time.time() + 30
        while pid and time.time() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)
        # No persistence: whatever it had is gone (the append-only files and any snapshot).
        redis_dir = os.path.join(self.state, "redis")
        for name in ("appendonlydir", "appendonly.aof", "dump.rdb"):
            path = os.path.join(redis_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.remove(path)
        rc, out = lib("start_redis", self.state, port)
        return rc == 0, out
