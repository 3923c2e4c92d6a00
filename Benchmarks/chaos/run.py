#!/usr/bin/env python3
"""One chaos run against a running stack (Benchmarks/chaos.sh starts the stack and calls this).

Creates merchants of every tier, subscribes to every event, sends a mixed seeded load over AMQP
and HTTP while the fault injector kills workers and restarts RabbitMQ, PostgreSQL and Redis,
waits until every command has its outcome, runs the invariant checker (check.py) and prints the
tables. Exit status 1 when an invariant is violated or outcomes are missing.
"""

import argparse
import collections
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from amqp_io import Publisher, Subscriber  # noqa: E402
from check import Checker  # noqa: E402
from common import HTTP, Stack, read_jsonl, write_jsonl  # noqa: E402
from faults import FaultInjector  # noqa: E402
from load import HttpPool, Load, Observed  # noqa: E402

LOG_STARTED = time.time()


def log(text):
    sys.stderr.write(f"[chaos {time.time() - LOG_STARTED:7.1f}s] {text}\n")
    sys.stderr.flush()


def create_merchants(stack, per_tier, rng):
    client = HTTP(stack.http_port)
    merchants = []
    for tier in ("starter", "business", "enterprise", "premium"):
        for k in range(per_tier):
            base = "USD" if k % 2 == 0 else "CNY"
            body = {"name": f"chaos {tier} {k + 1}", "tier": tier, "base_currency": base, "country": "US" if base == "USD" else "CN"}
            for _ in range(30):
                status, _, answer = client.request("POST", "/api/v1/admin/merchants", body=body,
                                                   headers={"Authorization": "Bearer " + stack.admin_token})
                if status == 201:
                    break
                time.sleep(1)
            else:
                raise SystemExit(f"cannot create a merchant: HTTP {status} {answer}")
            m = answer["merchant"]
            merchants.append({"merchant_id": m["merchant_id"], "tier": tier, "base_currency": base, "api_key": answer["api_key"]})
    client.close()
    return merchants


class Tracker:
    """Which commands have their outcome yet (for the fault schedule and the drain). AMQP
    commands by their id in the events; HTTP ones once the inbox names their AMQP command."""

    def __init__(self, stack, load, observed):
        self.stack = stack
        self.load = load
        self.observed = observed
        self.done = set()
        self.http_ids = {}  # command n -> AMQP command id
        self.db = None
        self.total = 1
        self.last_outcome = 0.0
        self.parked = set()  # commands found in the parking queue (they will get no outcome)
        self.todo = []  # commands without an outcome yet
        self.seen = 0  # commands of the log looked at so far
        self.resolved_at = 0.0
        # The monitor thread and the drain loop both call update(): one at a time, or a command
        # taken off the to-do list by one could be dropped by the other.
        self.lock = threading.Lock()

    def progress(self):
        return len(self.done) / max(1, self.total)

    def _db(self):
        import psycopg

        if self.db is None or self.db.closed:
            self.db = psycopg.connect(self.stack.pg_dsn, autocommit=True, connect_timeout=3)
        return self.db

    def update(self):
        with self.lock:
            self._update()

    def _update(self):
        first = self.observed.first_event
        unresolved = []
        commands = self.load.commands
        # The load thread appends meanwhile: read the length once, or commands appended between
        # two reads would be skipped for good (and reported without an outcome).
        end = len(commands)
        self.todo.extend(commands[self.seen:end])
        self.seen = end
        todo, self.todo = self.todo, []
        for c in todo:
            n = c["n"]
            if n in self.done:
                continue
            self.todo.append(c)  # dropped again below once it has its outcome
            if c["channel"] == "amqp":
                at = first.get(c["id"])
            elif c.get("invalid") and c.get("http_status") in (400, 413, 415):
                at = c.get("answered_at")
            elif n in self.http_ids:
                at = first.get(self.http_ids[n])
            else:
                at = None
                if c.get("key") and c.get("answered_at"):
                    unresolved.append(c)
            if at is not None:
                self.done.add(n)
                self.todo.pop()
                self.last_outcome = max(self.last_outcome, at)
        if unresolved and time.time() - self.resolved_at > 2.0:
            self.resolved_at = time.time()
            unresolved = unresolved[:5000]
            try:
                db = self._db()
                rows = db.execute("""
                    SELECT i.merchant_id, i.idempotency_key, i.command_id FROM inbox i
                    JOIN unnest(%s::text[], %s::text[]) AS k(m, key) ON i.merchant_id = k.m AND i.idempotency_key = k.key
                    WHERE i.outcome_type IS NOT NULL""",
                                  ([c.get("mid") or "" for c in unresolved], [c["key"] for c in unresolved])).fetchall()
                found = {(r[0], r[1]): r[2] for r in rows}
                for c in unresolved:
                    cid = found.get((c.get("mid") or "", c["key"]))
                    if cid:
                        self.http_ids[c["n"]] = cid
            except Exception:
                if self.db is not None:
                    try:
                        self.db.close()
                    except Exception:
                        pass
                self.db = None  # PostgreSQL restarting: next round

    def missing(self):
        return [c for c in self.load.commands if c["n"] not in self.done]

    def find_parked(self):
        """Commands without an outcome that sit in the parking queue: no outcome will come."""
        from amqp_io import peek_parked

        try:
            ids = {p["message_id"] for p in peek_parked(self.stack.amqp_url)}
        except Exception:
            return
        for c in self.missing():
            if c["channel"] == "amqp" and c["id"] in ids:
                self.parked.add(c["n"])


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def table(rows, header):
    width = max(len(r[0]) for r in rows + [header])
    cols = [max(len(str(r[i])) for r in rows + [header]) for i in range(1, len(header))]
    line = "| " + header[0].ljust(width) + " | " + " | ".join(str(h).rjust(c) for h, c in zip(header[1:], cols)) + " |"
    out = [line, "|" + "-" * (width + 2) + "|" + "|".join("-" * (c + 2) for c in cols) + "|"]
    for r in rows:
        out.append("| " + r[0].ljust(width) + " | " + " | ".join(str(v).rjust(c) for v, c in zip(r[1:], cols)) + " |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--out", required=True, help="directory for merchants.json, commands.jsonl, events.jsonl, faults.jsonl")
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0, help="commands a second (default: N/50, between 50 and 1000)")
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--merchants-per-tier", type=int, default=3)
    parser.add_argument("--http-share", type=float, default=0.10)
    parser.add_argument("--http-wait-share", type=float, default=0.05,
                        help="share of HTTP commands that wait for their outcome (the rest: Prefer: respond-async)")
    parser.add_argument("--http-threads", type=int, default=24)
    parser.add_argument("--malformed-share", type=float, default=0.01)
    parser.add_argument("--window", type=int, default=1000, help="unconfirmed publishes in flight")
    parser.add_argument("--drain-timeout", type=float, default=0, help="seconds (default: 180 + N/50)")
    parser.add_argument("--stall-timeout", type=float, default=90,
                        help="end the drain when no outcome arrived for this long (longer than the retry ladder)")
    args = parser.parse_args()
    rate = args.rate or max(50.0, min(1000.0, args.commands / 50.0))
    drain_timeout = args.drain_timeout or 180 + args.commands / 50.0
    os.makedirs(args.out, exist_ok=True)
    paths = {name: os.path.join(args.out, name) for name in ("merchants.json", "commands.jsonl", "events.jsonl", "faults.jsonl")}
    for name in ("events.jsonl", "faults.jsonl"):
        open(paths[name], "w").close()

    stack = Stack(args.state_dir)
    rng = random.Random(args.seed)
    merchants = create_merchants(stack, args.merchants_per_tier, rng)
    json.dump(merchants, open(paths["merchants.json"], "w"), indent=1)
    log(f"{len(merchants)} merchants; {args.commands} commands at {rate:.0f}/s, seed {args.seed}, "
        f"{'no faults' if args.no_faults else f'a worker killed every ~{args.kill_every:g} s'}")

    observed = Observed()
    subscriber = Subscriber(stack.amqp_url, "chaos.events", paths["events.jsonl"], on_event=observed.on_event, log=log)
    subscriber.declare()
    subscriber.start()
    publisher = Publisher(stack.amqp_url, stack.amqp_user, window=args.window, log=log)
    publisher.start()
    if not publisher.connected.wait(30):
        raise SystemExit("the publisher cannot connect to RabbitMQ")
    http = HttpPool(stack.http_port, args.http_threads, log)
    load = Load(args, stack, merchants, publisher, http, observed, log)
    tracker = Tracker(stack, load, observed)
    tracker.total = args.commands

    stop = threading.Event()

    def monitor():
        while not stop.is_set():
            tracker.update()
            stop.wait(0.5)

    threading.Thread(target=monitor, name="tracker", daemon=True).start()
    injector = None
    if not args.no_faults:
        injector = FaultInjector(stack.state_dir, stack.ports, random.Random(args.seed + 1), args.kill_every, tracker.progress, log,
                                 paths["faults.jsonl"])
        injector.start()

    def reporter():
        while not stop.is_set():
            stop.wait(10)
            log(f"sent {len(load.commands)}, outcomes {len(tracker.done)}, events {observed.count}, "
                f"publisher backlog {publisher.backlog()}, http pending {http.pending()}")

    threading.Thread(target=reporter, name="reporter", daemon=True).start()

    started = time.time()
    load.run(args.commands, rate, max_backlog=max(5000, args.window * 5), stop=stop)
    while publisher.backlog() or http.pending():
        time.sleep(0.05)
    # The last command accepted: a broker confirm, or an HTTP answer (for a request that waited
    # for its outcome, when it was first sent).
    last_publish = max([c["_item"].get("confirmed_at", 0) for c in load.commands if "_item" in c] +
                       [(c.get("sent_at") if c.get("waits") else c.get("answered_at")) or 0
                        for c in load.commands if c["channel"] == "http"])
    load_seconds = last_publish - started
    log(f"load sent in {load_seconds:.1f} s; draining")

    deadline = time.time() + drain_timeout
    progress_at, last_done, looked = time.time(), -1, False
    while time.time() < deadline:
        tracker.update()
        if len(tracker.done) != last_done:
            progress_at, last_done, looked = time.time(), len(tracker.done), False
        elif time.time() - progress_at > args.stall_timeout and not (injector and injector.pending_restarts()):
            log(f"no new outcome for {args.stall_timeout:.0f} s: giving up the drain")
            break
        elif time.time() - progress_at > 15 and not looked:
            tracker.find_parked()  # stuck: are the missing ones parked (no outcome will ever come)?
            looked = True
        restarts_left = injector is not None and bool(injector.pending_restarts())
        if len(tracker.done | tracker.parked) >= len(load.commands) and not restarts_left:
            if tracker.parked:
                log(f"{len(tracker.parked)} command(s) without an outcome are in the parking queue")
            break
        time.sleep(0.5)
    missing = tracker.missing()
    drain_seconds = max(0.0, tracker.last_outcome - last_publish) if tracker.last_outcome else None
    if injector is not None:
        injector.stop()
    stop.set()
    log(f"drained: {len(tracker.done)}/{len(load.commands)} outcomes"
        + (f", {len(missing)} missing after {drain_timeout:.0f} s" if missing else f" {drain_seconds:.1f} s after the last publish"))

    # Every event the outbox still holds reaches the subscriber before the check.
    check_db_outbox(stack, timeout=120)
    wait_subscriber(subscriber, timeout=120)
    subscriber.stopping = True
    subscriber.join(timeout=30)
    publisher.stop(timeout=5)
    http.stop()

    for c in load.commands:
        item = c.pop("_item", None)
        if item is not None:
            c["sent_at"] = item.get("published_at")
            c["confirmed_at"] = item.get("confirmed_at")
            c["attempts"] = item.get("attempts")
    write_jsonl(paths["commands.jsonl"], load.commands)

    log("checking the invariants")
    checker = Checker(stack, load.commands, paths["events.jsonl"], merchants, log=log)
    checker.run()
    faults = injector.faults if injector is not None else []
    report(args, rate, load, checker, faults, injector, publisher, http, subscriber, missing, load_seconds, drain_seconds)
    with open(os.path.join(args.out, "check.json"), "w") as f:
        json.dump({"violations": checker.violations, "notes": checker.notes, "stats": checker.stats,
                   "outcomes": checker.outcome_counts}, f, indent=1, default=str)
    sys.exit(1 if checker.violations or missing else 0)


def check_db_outbox(stack, timeout):
    import psycopg

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with psycopg.connect(stack.pg_dsn, autocommit=True, connect_timeout=3) as db:
                if db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0:
                    return True
        except Exception:
            pass
        time.sleep(0.5)
    log("the outbox is not empty after the drain")
    return False


def wait_subscriber(subscriber, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if subscriber.depth() == 0 and subscriber.idle.is_set() and time.time() - subscriber.last_delivery > 1.0:
            return True
        time.sleep(0.5)
    log("the event subscriber did not catch up")
    return False


def report(args, rate, load, checker, faults, injector, publisher, http, subscriber, missing, load_seconds, drain_seconds):
    cmds = load.commands
    amqp = sum(1 for c in cmds if c["channel"] == "amqp")
    kinds = collections.Counter(f["target"] if f["kind"] == "restart" else "kill" for f in faults)
    failed_restarts = [f["target"] for f in faults if f["kind"] == "restart" and not f.get("ok")]
    windows = injector.windows() if injector is not None else []
    during, outside = [], []
    by_design = 0
    for c in cmds:
        if c.get("transient"):
            by_design += 1  # amounts ending in 53 (holds: 53, 54): retried 1 + 5 + 30 s by design, then channel_error
            continue
        res = checker.results.get(c["n"]) or {}
        sent, done = c.get("sent_at"), res.get("outcome_at")
        if not sent or not done:
            continue
        latency = (done - sent) * 1000
        (during if any(a <= done and sent <= b for a, b in windows) else outside).append(latency)
    fmt = lambda v: f"{v:,.1f}" if v is not None else "-"  # noqa: E731
    rows = [
        ("commands sent: AMQP / HTTP", f"{amqp:,} / {len(cmds) - amqp:,}"),
        ("of them deliberately malformed", f"{sum(1 for c in cmds if c.get('invalid')):,}"),
        ("load: publish rate (target / achieved)", f"{rate:,.0f}/s / {len(cmds) / max(load_seconds, 1e-9):,.0f}/s"),
        ("faults: worker kills (kill -9)", f"{kinds.get('kill', 0):,}"),
        ("faults: RabbitMQ / PostgreSQL / Redis restarts",
         f"{kinds.get('rabbitmq', 0)} / {kinds.get('postgres', 0)} / {kinds.get('redis', 0)}"
         + (f" (failed: {', '.join(failed_restarts)})" if failed_restarts else "")),
        ("commands without an outcome", f"{len(missing):,}"),
        ("time to drain after the last publish", f"{drain_seconds:,.1f} s" if drain_seconds is not None else "-"),
        ("invariant violations", f"{len(checker.violations):,}"),
        ("publisher: re-published after a lost confirm", f"{publisher.stats.get('republished', 0):,}"),
        ("events: deliveries / distinct / redelivered ids",
         f"{checker.stats.get('event deliveries', 0):,} / {checker.stats.get('distinct events', 0):,} / "
         f"{checker.stats.get('events delivered more than once', 0):,}"),
        ("HTTP: retried after 5xx / 409 / 429 / connection error",
         f"{sum(v for k, v in http.stats.items() if k.startswith('retried_5'))} / {http.stats.get('retried_409', 0)} / "
         f"{http.stats.get('retried_429', 0)} / {http.stats.get('connection_errors', 0)}"),
        ("parked messages (all malformed)", f"{checker.stats.get('parked messages', 0):,}"),
    ]
    print()
    print(table(rows, (f"chaos run: {args.commands:,} commands, seed {args.seed}", "value")))
    lat_rows = [
        (f"commands alive during a fault window ({len(during):,})", fmt(percentile(during, 50)), fmt(percentile(during, 99))),
        (f"commands outside every fault window ({len(outside):,})", fmt(percentile(outside, 50)), fmt(percentile(outside, 99))),
        (f"all ({len(during) + len(outside):,})", fmt(percentile(during + outside, 50)), fmt(percentile(during + outside, 99))),
    ]
    print()
    print(table(lat_rows, ("latency: publish -> outcome event", "p50 ms", "p99 ms")))
    print(f"(without the {by_design:,} commands whose amount ends in 53, or 54 for a hold: the sandbox channel fails them "
          f"until the retries run out)")
    by_type = collections.defaultdict(collections.Counter)
    for c in cmds:
        label = (checker.results.get(c["n"]) or {}).get("outcome", "missing")
        by_type[c["type"] + (" (malformed)" if c.get("invalid") else "")][label] += 1
    out_rows = []
    for ctype in sorted(by_type):
        for label, count in by_type[ctype].most_common():
            out_rows.append((ctype, label, f"{count:,}"))
    print()
    width = max(len(r[0]) for r in out_rows)
    lw = max(len(r[1]) for r in out_rows)
    print(f"| {'command'.ljust(width)} | {'outcome'.ljust(lw)} | {'count':>7} |")
    print(f"|{'-' * (width + 2)}|{'-' * (lw + 2)}|{'-' * 9}|")
    for ctype, label, count in out_rows:
        print(f"| {ctype.ljust(width)} | {label.ljust(lw)} | {count:>7} |")
    use = checker.limit_use
    if use:
        per_tier = collections.defaultdict(float)
        for m in load.merchants:
            per_tier[m["tier"]] = max(per_tier[m["tier"]], use.get(m["merchant_id"], 0))
        print("\nhighest day-window use of the daily limit per tier: " +
              ", ".join(f"{t} {per_tier[t]:.0%}" for t in ("starter", "business", "enterprise", "premium")))
    checker.report(out=sys.stdout)
    if missing:
        print(f"\n{len(missing)} command(s) without an outcome, e.g.:")
        for c in missing[:10]:
            print("  " + json.dumps({k: v for k, v in c.items() if not k.startswith('_')}, default=str)[:400])


if __name__ == "__main__":
    main()
