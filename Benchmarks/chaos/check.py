#!/usr/bin/env python3
"""The chaos harness's invariant checker: reads PostgreSQL, Redis, the parking queue and the
events log of a run against a stack, and prints every violation with its evidence.

    python Benchmarks/chaos/check.py --state-dir .state/chaos --commands-log OUT/commands.jsonl \\
        --events-log OUT/events.jsonl [--merchants OUT/merchants.json] [--json OUT/check.json]

Exit status 0 when nothing is violated, 1 otherwise.

What it checks (issue 9 §4):
 1. outcomes: every command sent has exactly one outcome. A valid one: its inbox row (merchant,
    idempotency key) names it and holds an outcome type, and the events log has exactly one
    distinct event id of that type correlated to the command, and no rejection besides it. A
    malformed one: a command.rejected (invalid_request) event, or (HTTP) a 400 from the ingress,
    and nothing in the inbox. No effect doubled: at most one payment, pre-authorization, refund
    per command; the resource a command's outcome names exists once; at most one limit entry of
    each kind per reservation (refund: per refund).
 2. limits: no UTC day or month window counts more than the tier allows (RULES: tiers in MAJOR
    units of the base currency) in the durable record (`limit_recorded()` over `limit_entries`),
    no counted payment above the single limit; and Redis equals PostgreSQL for the current
    windows (counters Redis lost are first rebuilt by asking the ingress for the merchant's
    limits, which rebuilds them from PostgreSQL).
 3. money: per pre-authorization captured <= authorized, captured + released <= authorized, the
    capture payments sum to captured_amount (count to capture_count), its status agrees; per
    payment refunded <= amount, its refunds sum to refunded_amount, its status agrees.
 4. events: each resource's (payment, pre-authorization, order, export task) event versions run
    1..n, one distinct event id per version, n is the database's version and the last event shows
    the database's status; every merchant event the relay recorded as published
    (`notifications`) reached the subscriber; the outbox is empty.
 5. settlements: each equals its lines (gross = payments - refunds stamped with it, the counts),
    fee and net follow from gross and the tier's fee, and each was announced once.
 6. parking: every message in payfleet.parked has an x-parked-reason and is one of the
    deliberately malformed commands.
"""

import argparse
import collections
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import EXPONENT, HTTP, TIERS, Stack, read_jsonl  # noqa: E402

# Outcome event types of each command type (asyncapi.yaml "Exactly-once effect").
OUTCOMES = {
    "payment.create": {"payment.succeeded", "payment.pending", "payment.failed"},
    "preauth.create": {"preauth.authorized", "preauth.failed"},
    "preauth.capture": {"payment.succeeded"},
    "preauth.cancel": {"preauth.cancelled"},
    "payment.refund": {"payment.refunded"},
    "payment.complete": {"payment.succeeded", "payment.failed", "payment.reversed"},
    "payment.timeout": {"sweep.completed", "payment.timed_out", "payment.succeeded"},
    "settlement.run": {"settlement.run.completed"},
    "export.run": {"export.progress", "export.completed", "export.failed"},
}
REJECTED = "command.rejected"


class Checker:
    def __init__(self, stack, commands, events_path, merchants, log=print, rebuild_limits=True):
        self.stack = stack
        self.commands = commands
        self.events_path = events_path
        self.merchants = {m["merchant_id"]: m for m in merchants}
        self.log = log
        self.rebuild_limits = rebuild_limits
        self.violations = []
        self.notes = []
        self.stats = collections.Counter()
        self.results = {}  # command n -> {"outcome": label, "outcome_at": t}
        self.outcome_counts = collections.Counter()
        self.limit_use = {}  # merchant -> (max day use / limit)

    # ------------------------------------------------------------ plumbing

    def violation(self, check, what, **evidence):
        self.violations.append({"check": check, "what": what, "evidence": evidence})

    def note(self, text):
        self.notes.append(text)

    def load(self):
        import psycopg

        self.db = psycopg.connect(self.stack.pg_dsn, autocommit=True)
        mids = list(self.merchants)
        q = lambda sql, *args: self.db.execute(sql, args).fetchall()  # noqa: E731

        # Events: deduplicated on id; the first delivery of each id is kept.
        self.events = {}
        self.deliveries = collections.Counter()
        self.by_corr = collections.defaultdict(list)
        for rec in read_jsonl(self.events_path):
            eid = rec.get("id")
            if not eid:
                self.violation("events", "an undecodable event delivery", record=rec)
                continue
            self.deliveries[eid] += 1
            if eid in self.events:
                continue
            self.events[eid] = rec
            if rec.get("corr"):
                self.by_corr[rec["corr"]].append(rec)
        self.stats["event deliveries"] = sum(self.deliveries.values())
        self.stats["distinct events"] = len(self.events)

        self.inbox = {(r[0], r[1]): {"command_id": r[2], "command_type": r[3], "outcome_type": r[4]}
                      for r in q("SELECT merchant_id, idempotency_key, command_id, command_type, outcome_type FROM inbox "
                                 "WHERE merchant_id = ANY(%s) OR merchant_id = ''", mids)}
        self.payments = {r[0]: dict(zip(("payment_no", "merchant_id", "order_no", "amount", "amount_base", "currency", "status",
                                         "refunded_amount", "pre_auth_no", "command_id", "version", "succeeded_at",
                                         "settlement_id", "failure_code"), r))
                         for r in q("SELECT payment_no, merchant_id, order_no, amount, amount_base, currency, status, refunded_amount, "
                                    "pre_auth_no, command_id, version, succeeded_at, settlement_id, failure_code FROM payments "
                                    "WHERE merchant_id = ANY(%s)", mids)}
        self.holds = {r[0]: dict(zip(("pre_auth_no", "merchant_id", "amount", "amount_base", "status", "captured_amount",
                                      "capture_count", "released_amount", "command_id", "version"), r))
                      for r in q("SELECT pre_auth_no, merchant_id, amount, amount_base, status, captured_amount, capture_count, "
                                 "released_amount, command_id, version FROM pre_authorizations WHERE merchant_id = ANY(%s)", mids)}
        self.refunds = {r[0]: dict(zip(("refund_no", "payment_no", "merchant_id", "amount", "currency", "command_id",
                                        "settlement_id", "created_at"), r))
                        for r in q("SELECT refund_no, payment_no, merchant_id, amount, currency, command_id, settlement_id, created_at "
                                   "FROM refunds WHERE merchant_id = ANY(%s)", mids)}
        self.orders = {(r[0], r[1]): {"status": r[2], "version": r[3]}
                       for r in q("SELECT merchant_id, order_no, status, version FROM orders WHERE merchant_id = ANY(%s)", mids)}
        self.exports = {r[0]: {"merchant_id": r[1], "status": r[2], "version": r[3]}
                        for r in q("SELECT task_id, merchant_id, status, version FROM export_tasks WHERE merchant_id = ANY(%s)", mids)}
        self.settlements = [dict(zip(("settlement_id", "merchant_id", "currency", "day", "gross", "fee", "net", "fee_bps",
                                      "payment_count", "refund_count"), r))
                            for r in q("SELECT settlement_id, merchant_id, currency, day, gross, fee, net, fee_bps, payment_count, "
                                       "refund_count FROM settlements WHERE merchant_id = ANY(%s)", mids)]
        self.entries = q("SELECT id, merchant_id, limit_key, counted_at, amount, at, kind, ref FROM limit_entries "
                         "WHERE merchant_id = ANY(%s)", mids)
        self.notifications = q("SELECT event_id, merchant_id, event_type FROM notifications WHERE merchant_id = ANY(%s)", mids)
        self.outbox_left = q("SELECT count(*) FROM outbox")[0][0]

    # ------------------------------------------------------------ 1. outcomes, once each

    def resolve(self, c):
        """The AMQP command id behind a command of the log, and its inbox row (or None)."""
        mid, key = c.get("mid") or "", c.get("key")
        row = self.inbox.get((mid, key)) if key else None
        if c["channel"] == "amqp":
            return c["id"], row
        return (row["command_id"] if row else None), row

    def check_outcomes(self):
        by_type = collections.Counter()
        invalid_amqp = set()
        for c in self.commands:
            by_type[(c["type"], c["channel"])] += 1
            if c.get("invalid"):
                self._check_invalid(c)
                if c["channel"] == "amqp":
                    invalid_amqp.add(c["id"])
            else:
                self._check_valid(c)
        self.invalid_amqp = invalid_amqp
        self.stats["commands"] = len(self.commands)
        self.stats["commands over AMQP"] = sum(1 for c in self.commands if c["channel"] == "amqp")
        self.stats["commands over HTTP"] = sum(1 for c in self.commands if c["channel"] == "http")
        self.stats["malformed commands"] = sum(1 for c in self.commands if c.get("invalid"))

    def _first_at(self, eid):
        return self.events[eid]["recv"]

    def _check_invalid(self, c):
        n = c["n"]
        mid, key = c.get("mid") or "", c.get("key")
        if key and (mid, key) in self.inbox and self.inbox[(mid, key)]["command_id"] == c.get("id"):
            self.violation("outcome", "a malformed command took effect (it has an inbox row)", command=c["id"], type=c["type"],
                           inbox=self.inbox[(mid, key)])
        if c["channel"] == "http":
            if c.get("http_status") in (400, 413, 415) and c.get("http_code") in ("invalid_request", "unsupported_media_type",
                                                                                   "body_too_large"):
                label = f"HTTP {c['http_status']} {c['http_code']}"
                self.results[n] = {"outcome": label, "outcome_at": c.get("answered_at")}
                self.outcome_counts[label] += 1
            else:
                self.violation("outcome", "a malformed HTTP command was not refused with 400 invalid_request", command=c["id"],
                               variant=c.get("variant"), http_status=c.get("http_status"), http_code=c.get("http_code"))
            return
        rejections = {e["id"] for e in self.by_corr.get(c["id"], []) if e["type"] == REJECTED}
        others = {e["id"]: e["type"] for e in self.by_corr.get(c["id"], []) if e["type"] != REJECTED}
        if len(rejections) != 1:
            self.violation("outcome", f"a malformed command has {len(rejections)} distinct command.rejected events (want 1)",
                           command=c["id"], variant=c.get("variant"), events=sorted(rejections))
            return
        eid = next(iter(rejections))
        code = (self.events[eid].get("data") or {}).get("code")
        if code != "invalid_request":
            self.violation("outcome", f"a malformed command was rejected with {code}, not invalid_request", command=c["id"],
                           variant=c.get("variant"), event=eid)
        if others:
            self.violation("outcome", "a malformed command caused other events too", command=c["id"], events=others)
        label = f"{REJECTED} {code}"
        self.results[n] = {"outcome": label, "outcome_at": self._first_at(eid)}
        self.outcome_counts[label] += 1

    def _check_valid(self, c):
        n = c["n"]
        cid, row = self.resolve(c)
        evidence = {"command": c["id"], "type": c["type"], "merchant": c.get("mid"), "key": c.get("key"), "channel": c["channel"]}
        if c["channel"] == "http":
            evidence.update(http_status=c.get("http_status"), http_code=c.get("http_code"))
        if row is None:
            if c["channel"] == "http" and c.get("http_status") and 400 <= c["http_status"] < 500:
                self.violation("outcome", "the ingress refused a valid command", **evidence)
            else:
                corr = c["id"] if c["channel"] == "amqp" else None
                self.violation("outcome", "no inbox row: the command has no recorded outcome", **evidence,
                               events=[(e["id"], e["type"]) for e in self.by_corr.get(corr, [])][:5] if corr else None,
                               parked=self.parked_by_id.get(corr) if corr else None)
            self.results[n] = {"outcome": "missing", "outcome_at": None}
            self.outcome_counts["missing"] += 1
            return
        if c["channel"] == "amqp" and row["command_id"] != cid:
            self.violation("outcome", "the inbox row of this key names another command", **evidence, inbox=row)
        outcome = row["outcome_type"]
        if outcome is None:
            self.violation("outcome", "the inbox row has no outcome", **evidence, inbox=row)
            self.results[n] = {"outcome": "missing", "outcome_at": None}
            self.outcome_counts["missing"] += 1
            return
        if outcome != REJECTED and outcome not in OUTCOMES.get(c["type"], {outcome}):
            self.violation("outcome", f"outcome {outcome} is not one of a {c['type']}'s", **evidence)
        related = self.by_corr.get(row["command_id"], [])
        ids = {e["id"] for e in related if e["type"] == outcome}
        if len(ids) != 1:
            self.violation("outcome", f"{len(ids)} distinct {outcome} events for the command (want exactly 1)", **evidence,
                           command_id=row["command_id"], events=sorted(ids))
            if not ids:
                self.results[n] = {"outcome": "missing", "outcome_at": None}
                self.outcome_counts["missing event"] += 1
                return
        if outcome != REJECTED and any(e["type"] == REJECTED for e in related):
            self.violation("outcome", f"the command both succeeded ({outcome}) and was rejected", **evidence,
                           events=[(e["id"], e["type"]) for e in related])
        eid = sorted(ids)[0]
        data = self.events[eid].get("data") or {}
        label = outcome
        if outcome == REJECTED:
            label += " " + str(data.get("code"))
        elif outcome in ("payment.failed", "preauth.failed"):
            label += " " + str(data.get("failure_code"))
        self.results[n] = {"outcome": label, "outcome_at": self._first_at(eid), "event": eid, "command_id": row["command_id"]}
        self.outcome_counts[label] += 1
        self._check_effect(c, outcome, data, evidence)

    def _check_effect(self, c, outcome, data, evidence):
        """The resource the outcome names is in the database, made by this command."""
        mid, key, kind = c.get("mid"), c.get("key"), c["type"]
        cid = self.results[c["n"]].get("command_id")
        if kind == "payment.create" and outcome.startswith("payment."):
            number = common.payment_no(mid, key)
            p = self.payments.get(number)
            if p is None or p["command_id"] != cid or data.get("payment_no") != number:
                self.violation("effect", "the payment the outcome names is missing or not this command's", **evidence,
                               payment_no=number, row=p and {k: p[k] for k in ("command_id", "status")})
        elif kind == "preauth.create" and outcome.startswith("preauth."):
            number = common.pre_auth_no(mid, key)
            h = self.holds.get(number)
            if h is None or h["command_id"] != cid:
                self.violation("effect", "the pre-authorization the outcome names is missing or not this command's", **evidence,
                               pre_auth_no=number)
        elif kind == "preauth.capture" and outcome == "payment.succeeded":
            number = common.capture_payment_no(mid, key)
            p = self.payments.get(number)
            if p is None or not p["pre_auth_no"] or p["command_id"] != cid:
                self.violation("effect", "the capture's payment is missing or not this command's", **evidence, payment_no=number)
        elif kind == "payment.refund" and outcome == "payment.refunded":
            number = common.refund_no(mid, key)
            r = self.refunds.get(number)
            if r is None or r["command_id"] != cid:
                self.violation("effect", "the refund is missing or not this command's", **evidence, refund_no=number)
        elif outcome == REJECTED:
            made = {"payment.create": self.payments.get(common.payment_no(mid, key)) if key else None,
                    "preauth.create": self.holds.get(common.pre_auth_no(mid, key)) if key else None,
                    "preauth.capture": self.payments.get(common.capture_payment_no(mid, key)) if key else None,
                    "payment.refund": self.refunds.get(common.refund_no(mid, key)) if key else None}.get(kind)
            if made is not None:
                self.violation("effect", "a rejected command left a resource behind", **evidence, row=str(made)[:300])

    def check_doubles(self):
        for name, table in (("payments", self.payments), ("pre_authorizations", self.holds), ("refunds", self.refunds)):
            per_command = collections.defaultdict(list)
            for number, row in table.items():
                per_command[(row["merchant_id"], row["command_id"])].append(number)
            for (mid, cid), numbers in per_command.items():
                if len(numbers) > 1:
                    self.violation("doubled", f"{len(numbers)} {name} rows for one command", merchant=mid, command_id=cid,
                                   rows=sorted(numbers))
        seen = collections.Counter()
        for _id, mid, limit_key, _counted, _amount, _at, kind, ref in self.entries:
            seen[(mid, kind, ref if kind == "refund" else limit_key)] += 1
        for (mid, kind, what), count in seen.items():
            if count > 1:
                rows = [e for e in self.entries if e[1] == mid and e[6] == kind and (e[7] if kind == "refund" else e[2]) == what]
                self.violation("doubled", f"{count} limit_entries of kind {kind} for one {'refund' if kind == 'refund' else 'reservation'}",
                               merchant=mid, key=what, rows=[(r[0], r[4], str(r[5]), r[7]) for r in rows])

    # ------------------------------------------------------------ 2. limits

    def limits_of(self, m):
        tier = TIERS[m["tier"]]
        scale = 10 ** EXPONENT[m["base_currency"]]
        return {"single": tier["single"] * scale, "daily": tier["daily"] * scale, "monthly": tier["monthly"] * scale}

    def check_limits(self):
        days = collections.defaultdict(set)
        months = collections.defaultdict(set)
        for _id, mid, _key, counted, *_ in self.entries:
            counted = counted.astimezone(timezone.utc)
            days[mid].add(counted.date())
            months[mid].add((counted.year, counted.month))
        for mid, m in self.merchants.items():
            limits = self.limits_of(m)
            worst = 0.0
            for day in sorted(days[mid]):
                start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
                used = self.recorded(mid, start, start + timedelta(days=1))
                worst = max(worst, used / limits["daily"])
                if used > limits["daily"]:
                    self.violation("limits", "a day window counts more than the daily limit", merchant=mid, tier=m["tier"],
                                   day=str(day), recorded=used, limit=limits["daily"])
                if used < 0:
                    self.violation("limits", "a day window counts below zero", merchant=mid, day=str(day), recorded=used)
            for year, month in sorted(months[mid]):
                start = datetime(year, month, 1, tzinfo=timezone.utc)
                end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=timezone.utc)
                used = self.recorded(mid, start, end)
                if used > limits["monthly"]:
                    self.violation("limits", "a month window counts more than the monthly limit", merchant=mid, tier=m["tier"],
                                   month=f"{year}-{month:02d}", recorded=used, limit=limits["monthly"])
            self.limit_use[mid] = worst
        counting = ("succeeded", "pending", "partially_refunded", "refunded")
        for p in self.payments.values():
            m = self.merchants[p["merchant_id"]]
            if p["status"] in counting and not p["pre_auth_no"] and (p["amount_base"] or 0) > self.limits_of(m)["single"]:
                self.violation("limits", "a counted payment is above the single limit", payment_no=p["payment_no"],
                               amount_base=p["amount_base"], limit=self.limits_of(m)["single"])
        for h in self.holds.values():
            m = self.merchants[h["merchant_id"]]
            if h["status"] not in ("failed",) and h["amount_base"] > self.limits_of(m)["single"]:
                self.violation("limits", "a pre-authorization above the single limit was authorized", pre_auth_no=h["pre_auth_no"],
                               amount_base=h["amount_base"], limit=self.limits_of(m)["single"])
        self.check_redis()

    def recorded(self, mid, start, end):
        return self.db.execute("SELECT limit_recorded(%s, %s, %s)", (mid, start, end)).fetchone()[0]

    def check_redis(self):
        import redis

        r = redis.Redis.from_url(self.stack.redis_url, decode_responses=True)
        now = datetime.now(timezone.utc)
        day, month = now.strftime("%Y%m%d"), now.strftime("%Y%m")
        day_start = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
        month_start = datetime(now.year, now.month, 1, tzinfo=timezone.utc)
        month_end = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=timezone.utc)
        client = HTTP(self.stack.http_port)
        rebuilt = 0
        redis_started = datetime.fromtimestamp(time.time() - int(r.info("server")["uptime_in_seconds"]), timezone.utc)
        for mid, m in self.merchants.items():
            keys = {"day": f"pf:lim:{{{mid}}}:d:{day}", "month": f"pf:lim:{{{mid}}}:m:{month}"}
            loaded = f"pf:lim:{{{mid}}}:loaded:{month}"
            if not r.exists(loaded):
                if not self.rebuild_limits:
                    self.note(f"{mid}: Redis holds no counters for {month} (not rebuilt: --no-rebuild)")
                    continue
                # Redis lost them and no payment since rebuilt them: the ingress rebuilds them from PostgreSQL.
                status, _, answer = client.request("GET", "/api/v1/merchant/limits",
                                                   headers={"Authorization": "Bearer " + m["api_key"]})
                rebuilt += 1
                if status != 200:
                    self.violation("limits", "GET /api/v1/merchant/limits failed", merchant=mid, status=status, answer=answer)
                    continue
            redis_day, redis_month = (int(r.get(keys["day"]) or 0), int(r.get(keys["month"]) or 0))
            pg_day = self.recorded(mid, day_start, day_start + timedelta(days=1))
            pg_month = self.recorded(mid, month_start, month_end)
            if (redis_day, redis_month) != (pg_day, pg_month):
                # Evidence: give-backs (releases) made since Redis last started, of reservations made
                # before it: their reservation records were lost with Redis, so the release script
                # had nothing to give back while the record (limit_entries) did give it back.
                orphans = [(e[0], e[7], e[2], e[4], str(e[3]), str(e[5])) for e in self.entries
                           if e[1] == mid and e[6] == "release" and e[5] >= redis_started > e[3]
                           and not r.exists(f"pf:lim:{{{mid}}}:r:{e[2]}")]
                # And reservations Redis still holds that the record never counted: a command that
                # reserved, then never finished (parked without its handler giving them back).
                counted = {e[2] for e in self.entries if e[1] == mid and e[6] == "reserve"}
                held = []
                for rkey in r.scan_iter(match=f"pf:lim:{{{mid}}}:r:*", count=1000):
                    record = r.hgetall(rkey)
                    key = rkey.split(":r:", 1)[1]
                    if record.get("state") == "reserved" and key not in counted:
                        held.append((key, int(record.get("amount") or 0), (self.inbox.get((mid, key)) or {}).get("outcome_type")))
                self.violation("limits", "Redis counters differ from PostgreSQL's record", merchant=mid, tier=m["tier"],
                               redis_day=redis_day, postgres_day=pg_day, redis_month=redis_month, postgres_month=pg_month,
                               redis_minus_postgres=redis_day - pg_day, redis_started=str(redis_started),
                               releases_of_reservations_redis_lost=len(orphans),
                               their_amount=-sum(o[3] for o in orphans),
                               sample_entries_id_ref_key_amount_counted_at_at=orphans[:4],
                               reservations_held_but_never_recorded=held[:5],
                               their_sum=sum(h[1] for h in held))
        client.close()
        self.stats["merchants whose counters were rebuilt for the check"] = rebuilt

    # ------------------------------------------------------------ 3. money

    def check_money(self):
        captures = collections.defaultdict(list)
        for p in self.payments.values():
            if p["pre_auth_no"]:
                captures[p["pre_auth_no"]].append(p)
        for h in self.holds.values():
            number, amount = h["pre_auth_no"], h["amount"]
            caps = captures.get(number, [])
            total = sum(p["amount"] for p in caps)
            ev = {"pre_auth_no": number, "amount": amount, "captured_amount": h["captured_amount"],
                  "released_amount": h["released_amount"], "status": h["status"], "capture_payments": len(caps),
                  "capture_total": total, "capture_count": h["capture_count"]}
            if h["captured_amount"] > amount or h["captured_amount"] + h["released_amount"] > amount:
                self.violation("money", "captured more than authorized", **ev)
            if total != h["captured_amount"] or len(caps) != h["capture_count"]:
                self.violation("money", "the capture payments do not add up to captured_amount / capture_count", **ev,
                               payments=[p["payment_no"] for p in caps][:10])
            closed = h["status"] in ("captured", "cancelled", "expired")
            if closed and h["captured_amount"] + h["released_amount"] != amount:
                self.violation("money", "a closed pre-authorization neither captured nor released part of it", **ev)
            if h["status"] == "authorized" and h["captured_amount"] != 0 or \
                    h["status"] == "partially_captured" and not 0 < h["captured_amount"] < amount:
                self.violation("money", "the pre-authorization's status disagrees with its captured amount", **ev)
        refunds = collections.defaultdict(list)
        for r in self.refunds.values():
            refunds[r["payment_no"]].append(r)
        for number, rs in refunds.items():
            if number not in self.payments:
                self.violation("money", "a refund of an unknown payment", payment_no=number, refunds=[r["refund_no"] for r in rs])
        for p in self.payments.values():
            rs = refunds.get(p["payment_no"], [])
            total = sum(r["amount"] for r in rs)
            ev = {"payment_no": p["payment_no"], "amount": p["amount"], "refunded_amount": p["refunded_amount"], "status": p["status"],
                  "refunds": len(rs), "refund_total": total}
            if p["refunded_amount"] > p["amount"]:
                self.violation("money", "refunded more than the payment took", **ev)
            if total != p["refunded_amount"]:
                self.violation("money", "the refunds do not add up to refunded_amount", **ev, refund_nos=[r["refund_no"] for r in rs][:10])
            expected = ("refunded" if p["refunded_amount"] == p["amount"] else "partially_refunded") if p["refunded_amount"] else None
            if expected and p["status"] != expected or not expected and p["status"] in ("refunded", "partially_refunded"):
                self.violation("money", "the payment's status disagrees with its refunded amount", **ev)
            if rs and p["succeeded_at"] is None:
                self.violation("money", "refunds of a payment that never succeeded", **ev)

    # ------------------------------------------------------------ 4. event versions

    def check_versions(self):
        resources = collections.defaultdict(lambda: collections.defaultdict(set))
        last = {}
        for eid, e in self.events.items():
            kind, data, mid = e.get("type") or "", e.get("data"), e.get("mid")
            if not isinstance(data, dict) or "version" not in data or mid not in self.merchants:
                continue
            if kind.startswith("payment.") and data.get("payment_no"):
                key = ("payment", data["payment_no"])
            elif kind.startswith("preauth.") and data.get("pre_auth_no"):
                key = ("preauth", data["pre_auth_no"])
            elif kind == "order.updated":
                key = ("order", mid, data.get("order_no"))
            elif kind.startswith("export.") and data.get("task_id"):
                key = ("export", data["task_id"])
            else:
                continue
            version = data["version"]
            resources[key][version].add(eid)
            if key not in last or version > last[key][0]:
                last[key] = (version, data.get("status"), kind)
        self.stats["resources with events"] = len(resources)
        db = {}
        for p in self.payments.values():
            db[("payment", p["payment_no"])] = (p["version"], p["status"])
        for h in self.holds.values():
            db[("preauth", h["pre_auth_no"])] = (h["version"], h["status"])
        for (mid, order_no), o in self.orders.items():
            db[("order", mid, order_no)] = (o["version"], o["status"])
        for task, x in self.exports.items():
            db[("export", task)] = (x["version"], x["status"])
        for key in set(db) | set(resources):
            versions = resources.get(key, {})
            repeated = {v: sorted(ids) for v, ids in versions.items() if len(ids) > 1}
            if repeated:
                self.violation("versions", "one version of a resource was announced by several distinct events", resource=key,
                               versions=repeated)
            have = sorted(versions)
            # An export task changes version with every chunk it writes (its progress), but only
            # the slices that end a delivery announce it (export.progress / .completed / .failed):
            # its versions may skip, so only the last one is compared with the database's.
            # Payments, pre-authorizations and orders announce every change (checked on a run).
            if have and key[0] != "export" and have != list(range(1, have[-1] + 1)):
                missing = sorted(set(range(1, have[-1] + 1)) - set(have))
                self.violation("versions", "a gap in a resource's event versions", resource=key, versions=have[:20], missing=missing[:20])
            if key not in db:
                self.violation("versions", "events for a resource the database does not have", resource=key, versions=have[:10])
                continue
            version, status = db[key]
            top = have[-1] if have else 0
            if top != version:
                self.violation("versions", f"the events end at version {top}, the database is at {version}", resource=key,
                               db_status=status, last_event=last.get(key))
            elif have and key[0] != "export" and last[key][1] != status:
                self.violation("versions", "the last event's status is not the database's", resource=key, db_status=status,
                               last_event=last[key])

    def check_delivery(self):
        missing = [(eid, mid, kind) for eid, mid, kind in self.notifications if eid not in self.events]
        if missing:
            self.violation("events", f"{len(missing)} published merchant events never reached the subscriber", sample=missing[:10])
        if self.outbox_left:
            self.violation("events", f"{self.outbox_left} events are still in the outbox after the drain")
        redelivered = sum(1 for count in self.deliveries.values() if count > 1)
        self.stats["events delivered more than once"] = redelivered

    # ------------------------------------------------------------ 5. settlements

    def check_settlements(self):
        lines_p = collections.defaultdict(list)
        lines_r = collections.defaultdict(list)
        for p in self.payments.values():
            if p["settlement_id"]:
                lines_p[p["settlement_id"]].append(p)
        for r in self.refunds.values():
            if r["settlement_id"]:
                lines_r[r["settlement_id"]].append(r)
        announced = collections.defaultdict(set)
        for eid, e in self.events.items():
            if e.get("type") == "settlement.created" and isinstance(e.get("data"), dict):
                announced[e["data"].get("settlement_id")].add(eid)
        known = set()
        for s in self.settlements:
            sid = s["settlement_id"]
            known.add(sid)
            ps, rs = lines_p.get(sid, []), lines_r.get(sid, [])
            gross = sum(p["amount"] for p in ps) - sum(r["amount"] for r in rs)
            ev = {"settlement_id": sid, "merchant": s["merchant_id"], "currency": s["currency"], "day": str(s["day"]),
                  "gross": s["gross"], "lines_gross": gross, "payment_count": s["payment_count"], "payment_lines": len(ps),
                  "refund_count": s["refund_count"], "refund_lines": len(rs)}
            if gross != s["gross"] or len(ps) != s["payment_count"] or len(rs) != s["refund_count"]:
                self.violation("settlements", "a settlement does not equal its lines", **ev)
            wrong = [x.get("payment_no") for x in ps + rs if x["merchant_id"] != s["merchant_id"] or x["currency"] != s["currency"]]
            if wrong:
                self.violation("settlements", "a settlement holds lines of another merchant or currency", **ev, lines=wrong[:10])
            tier_bps = TIERS[self.merchants[s["merchant_id"]]["tier"]]["fee_bps"]
            fee = (abs(s["gross"]) * s["fee_bps"] + 5000) // 10000 * (1 if s["gross"] >= 0 else -1)
            if s["fee_bps"] != tier_bps or s["fee"] != fee or s["net"] != s["gross"] - s["fee"]:
                self.violation("settlements", "fee or net do not follow from gross and the tier's fee", **ev, fee=s["fee"],
                               expected_fee=fee, net=s["net"], fee_bps=s["fee_bps"], tier_bps=tier_bps)
            if len(announced.get(sid, ())) != 1:
                self.violation("settlements", f"{len(announced.get(sid, ()))} settlement.created events for a settlement (want 1)",
                               settlement_id=sid)
        for sid in set(lines_p) | set(lines_r):
            if sid not in known:
                self.violation("settlements", "lines stamped with an unknown settlement", settlement_id=sid)
        self.stats["settlements"] = len(self.settlements)

    # ------------------------------------------------------------ 6. parking

    def read_parked(self):
        from amqp_io import peek_parked

        try:
            self.parked = peek_parked(self.stack.amqp_url)
        except Exception as error:
            self.violation("parked", f"cannot read payfleet.parked: {error!r}")
            self.parked = None
        self.parked_by_id = collections.defaultdict(list)
        for p in self.parked or []:
            self.parked_by_id[p["message_id"]].append(p["headers"].get("x-parked-reason") or
                                                      "broker dead-letter: " + str(p["headers"].get("x-first-death-reason")))

    def check_parked(self):
        parked = self.parked
        if parked is None:
            return
        self.stats["parked messages"] = len(parked)
        seen = collections.Counter(p["message_id"] for p in parked)
        for p in parked:
            reason = p["headers"].get("x-parked-reason")
            if not reason:
                death = p["headers"].get("x-first-death-reason")
                self.violation("parked", "a parked message without x-parked-reason"
                               + (f" (dead-lettered by the broker: x-first-death-reason {death}, from "
                                  f"{p['headers'].get('x-first-death-queue')})" if death else ""),
                               message_id=p["message_id"], type=p["type"],
                               malformed_command=p["message_id"] in self.invalid_amqp, headers=p["headers"], body=p["body"][:160])
            elif p["message_id"] not in self.invalid_amqp:
                self.violation("parked", "a parked message that is not a deliberately malformed command", message_id=p["message_id"],
                               type=p["type"], reason=reason, body=p["body"][:200])
        unparked = [cid for cid in self.invalid_amqp if cid not in seen]
        if unparked:
            self.note(f"{len(unparked)} malformed AMQP commands were rejected but are not in the parking queue")
        twice = sum(1 for count in seen.values() if count > 1)
        if twice:
            self.note(f"{twice} malformed commands were parked more than once (redelivered after a worker was killed)")

    # ------------------------------------------------------------ run

    def run(self):
        started = time.time()
        self.load()
        self.read_parked()
        self.check_outcomes()
        self.check_doubles()
        self.check_limits()
        self.check_money()
        self.check_versions()
        self.check_delivery()
        self.check_settlements()
        self.check_parked()
        self.stats["check seconds"] = round(time.time() - started, 1)
        self.db.close()
        return self.violations

    def report(self, out=sys.stdout, limit=15):
        by_check = collections.defaultdict(list)
        for v in self.violations:
            by_check[v["check"]].append(v)
        print(f"\ninvariants: {len(self.violations)} violation(s)", file=out)
        for check, items in by_check.items():
            print(f"  [{check}] {len(items)}", file=out)
            for v in items[:limit]:
                print(f"    - {v['what']}: {json.dumps(v['evidence'], default=str)[:900]}", file=out)
            if len(items) > limit:
                print(f"    ... and {len(items) - limit} more", file=out)
        for text in self.notes:
            print(f"  note: {text}", file=out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", required=True, help="the stack's state dir (up.sh's PAYFLEET_STATE_DIR)")
    parser.add_argument("--commands-log", required=True)
    parser.add_argument("--events-log", required=True)
    parser.add_argument("--merchants", help="merchants.json of the run (default: next to the commands log)")
    parser.add_argument("--json", help="write violations, notes and stats to this file")
    parser.add_argument("--no-rebuild", action="store_true",
                        help="do not ask the ingress to rebuild counters Redis lost (compare only those present)")
    args = parser.parse_args()
    merchants_path = args.merchants or os.path.join(os.path.dirname(os.path.abspath(args.commands_log)), "merchants.json")
    checker = Checker(Stack(args.state_dir), list(read_jsonl(args.commands_log)), args.events_log,
                      json.load(open(merchants_path)), rebuild_limits=not args.no_rebuild)
    checker.run()
    checker.report()
    print("\noutcomes:", file=sys.stdout)
    for label, count in sorted(checker.outcome_counts.items(), key=lambda kv: -kv[1]):
        print(f"  {count:>8}  {label}")
    for name, value in checker.stats.items():
        print(f"  {name}: {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"violations": checker.violations, "notes": checker.notes, "stats": checker.stats,
                       "outcomes": checker.outcome_counts}, f, indent=1, default=str)
    sys.exit(1 if checker.violations else 0)


if __name__ == "__main__":
    main()
