"""The load of the chaos harness: a mixed, seeded command load for a set of merchants, over
AMQP (most of it) and through the HTTP ingress (a share of it), with every command recorded.

Later commands name resources made by earlier ones through their derived ids (common.py). Most
captures, cancels, refunds and notifies pick a resource whose state the event subscriber has
already seen (so they mostly make sense); a share picks one that was only sent (and may get
not_found or invalid_state: also an outcome).
"""

import collections
import hashlib
import hmac
import json
import queue
import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import common
from common import EXPONENT, HTTP, TIERS, iso

REFUNDABLE = ("succeeded", "partially_refunded")
OPEN_HOLD = ("authorized", "partially_captured")


class Observed:
    """Resource states as the events tell them (updated on the subscriber's thread)."""

    def __init__(self):
        self.payments = {}
        self.holds = {}
        self.refundable = collections.defaultdict(list)
        self.open_holds = collections.defaultdict(list)
        self.closed_holds = collections.defaultdict(list)
        self.pending = collections.defaultdict(list)
        self.timed_out = collections.defaultdict(list)
        self.first_event = {}  # correlation id -> when its first event arrived
        self.count = 0

    def on_event(self, rec):
        self.count += 1
        corr = rec.get("corr")
        if corr and corr not in self.first_event:
            self.first_event[corr] = rec["recv"]
        kind = rec.get("type") or ""
        data = rec.get("data")
        if not isinstance(data, dict):
            return
        if kind.startswith("payment.") and data.get("payment_no"):
            number = data["payment_no"]
            old = self.payments.get(number)
            if old is not None and old["version"] >= (data.get("version") or 0):
                return
            state = {"mid": data.get("merchant_id"), "amount": data.get("amount") or 0, "status": data.get("status"),
                     "refunded": data.get("refunded_amount") or 0, "channel": data.get("channel"),
                     "version": data.get("version") or 0, "failure": data.get("failure_code")}
            self.payments[number] = state
            mid = state["mid"]
            if state["status"] in REFUNDABLE and (old is None or old["status"] not in REFUNDABLE):
                self.refundable[mid].append(number)
            elif state["status"] == "pending" and (old is None or old["status"] != "pending"):
                self.pending[mid].append(number)
            elif state["status"] == "cancelled" and state["failure"] == "timeout":
                self.timed_out[mid].append(number)
        elif kind.startswith("preauth.") and data.get("pre_auth_no"):
            number = data["pre_auth_no"]
            old = self.holds.get(number)
            if old is not None and old["version"] >= (data.get("version") or 0):
                return
            state = {"mid": data.get("merchant_id"), "amount": data.get("amount") or 0, "status": data.get("status"),
                     "captured": data.get("captured_amount") or 0, "version": data.get("version") or 0}
            self.holds[number] = state
            if state["status"] in OPEN_HOLD and (old is None or old["status"] not in OPEN_HOLD):
                self.open_holds[state["mid"]].append(number)
            elif state["status"] in ("captured", "cancelled", "expired"):
                self.closed_holds[state["mid"]].append(number)

    @staticmethod
    def pick(rng, items, table, statuses):
        """A random entry of `items` whose state in `table` is still one of `statuses` (stale
        entries found on the way are dropped); None if there is none."""
        for _ in range(6):
            if not items:
                return None
            index = rng.randrange(len(items))
            number = items[index]
            state = table.get(number)
            if state is not None and state["status"] in statuses:
                return number
            items[index] = items[-1]
            items.pop()
        return None


class Bucket:
    """A token bucket: the HTTP share of a merchant stays under its tier's requests per minute."""

    def __init__(self, per_minute):
        self.rate = per_minute * 0.7 / 60.0
        self.capacity = max(2.0, per_minute * 0.05)
        self.tokens = self.capacity
        self.at = time.time()

    def take(self):
        t = time.time()
        self.tokens = min(self.capacity, self.tokens + (t - self.at) * self.rate)
        self.at = t
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class HttpPool:
    """Threads that send the HTTP share of the load, each request retried (same Idempotency-Key)
    until the ingress answers with something other than 5xx, 409 in flight or 429."""

    def __init__(self, port, threads, log, give_up_after=300):
        self.port = port
        self.jobs = queue.Queue()
        self.log = log
        self.give_up_after = give_up_after
        self.stats = collections.Counter()
        self.busy = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, name=f"http-{k}", daemon=True) for k in range(threads)]
        for t in self.threads:
            t.start()

    def submit(self, rec, method, path, body=None, raw=None, headers=None):
        with self.lock:
            self.busy += 1
        self.jobs.put((rec, method, path, body, raw, headers or {}))

    def pending(self):
        return self.busy

    def stop(self):
        for _ in self.threads:
            self.jobs.put(None)
        for t in self.threads:
            t.join(timeout=30)

    def _work(self):
        client = HTTP(self.port, timeout=60)
        while True:
            job = self.jobs.get()
            if job is None:
                client.close()
                return
            rec, method, path, body, raw, headers = job
            try:
                self._send(client, rec, method, path, body, raw, headers)
            finally:
                with self.lock:
                    self.busy -= 1

    def _send(self, client, rec, method, path, body, raw, headers):
        first = time.time()
        rec["sent_at"] = first
        attempts = 0
        while True:
            attempts += 1
            status, hdrs, answer = None, {}, None
            try:
                status, hdrs, answer = client.request(method, path, body=body, raw=raw, headers=headers)
            except Exception as error:  # connection refused / reset while the ingress restarts
                self.stats["connection_errors"] += 1
                rec["last_error"] = repr(error)[:200]
            retry_in = None
            if status is None or status >= 500:
                retry_in = 1.0
            elif status == 409 and isinstance(answer, dict) and answer.get("code") == "idempotency_key_in_use":
                retry_in = 2.0
            elif status == 429:
                retry_in = min(60.0, float(hdrs.get("Retry-After") or hdrs.get("retry-after") or 5))
            if retry_in is not None and time.time() - first < self.give_up_after:
                if status is not None:
                    self.stats[f"retried_{status}"] += 1
                time.sleep(retry_in)
                continue
            break
        rec["answered_at"] = time.time()
        rec["attempts"] = attempts
        rec["http_status"] = status
        self.stats[f"status_{status}"] += 1
        if isinstance(answer, dict):
            if answer.get("code"):
                rec["http_code"] = answer["code"]
            if answer.get("task_id"):
                rec["task_id"] = answer["task_id"]
                rec["key"] = "export:" + answer["task_id"]
            for field in ("status", "payment_no", "pre_auth_no"):
                if answer.get(field) is not None:
                    rec.setdefault("http_" + field, answer[field])


class Load:
    """Builds and sends the commands. `commands` is the log (one dict per command sent)."""

    def __init__(self, args, stack, merchants, publisher, http, observed, log):
        self.args = args
        self.stack = stack
        self.merchants = merchants
        self.publisher = publisher
        self.http = http
        self.observed = observed
        self.log = log
        self.rng = random.Random(args.seed)
        self.run_tag = f"cx{args.seed}-{int(time.time()) % 100000:05d}"
        self.commands = []
        self.by_tier = collections.defaultdict(list)
        for m in merchants:
            self.by_tier[m["tier"]].append(m)
        self.buckets = {m["merchant_id"]: Bucket(TIERS[m["tier"]]["per_minute"]) for m in merchants}
        self.sent_payments = collections.defaultdict(list)  # mid -> payment_nos only sent
        self.sent_holds = collections.defaultdict(list)
        self.orders = collections.defaultdict(list)
        self.seq = 0
        self.last_publish = 0.0
        self.kinds = ["payment", "preauth", "capture", "cancel", "refund", "notify", "reorder", "malformed"]
        self.weights = [0.55, 0.12, 0.10, 0.04, 0.10, 0.04, 0.01, args.malformed_share]

    # ------------------------------------------------------------ sending

    def _key(self, label):
        self.seq += 1
        return f"{self.run_tag}-{self.seq}-{label}"

    def _record(self, ctype, mid, key, channel, invalid=False, data=None, **extra):
        rec = {"n": len(self.commands), "type": ctype, "mid": mid, "key": key, "channel": channel, "invalid": invalid}
        rec.update(extra)
        ending = data.get("amount") % 100 if isinstance(data, dict) and isinstance(data.get("amount"), int) else None
        if ending == 53 or ending == 54 and ctype == "preauth.create":
            # The sandbox channel fails it (53) or leaves a hold unanswered (54) until the
            # retries run out: slow by design.
            rec["transient"] = True
        self.commands.append(rec)
        return rec

    def amqp(self, ctype, mid, data, key=None, invalid=False, body=None, envelope=None, **extra):
        """Publishes one command (CloudEvents envelope) through the publisher."""
        cid = str(uuid.uuid4())
        key = key or self._key(ctype)
        if envelope is None:
            envelope = {"specversion": "1.0", "id": cid, "type": ctype, "source": "/chaos/load", "time": iso(),
                        "idempotencykey": key, "data": data}
            if mid is not None:
                envelope["merchantid"] = mid
        if body is None:
            body = json.dumps(envelope, separators=(",", ":")).encode()
        item = {"id": cid, "type": ctype, "body": body}
        rec = self._record(ctype, mid, key, "amqp", invalid, data=data, id=cid, **extra)
        rec["_item"] = item
        self.publisher.submit(item)
        return rec

    def http_cmd(self, ctype, m, path, data, key=None, invalid=False, raw=None, **extra):
        key = key or self._key(ctype)
        headers = {"Authorization": "Bearer " + m["api_key"], "Idempotency-Key": key}
        # Most requests do not wait for the outcome (Prefer: respond-async), a few do (201 with it).
        if self.rng.random() >= self.args.http_wait_share:
            headers["Prefer"] = "respond-async"
        else:
            extra["waits"] = True  # answered only with (or 5 s without) the outcome
        rec = self._record(ctype, m["merchant_id"], key, "http", invalid, data=data, id=f"h-{self.run_tag}-{len(self.commands)}",
                           **extra)
        self.http.submit(rec, "POST", path, body=None if raw is not None else data, raw=raw, headers=headers)
        return rec

    def want_http(self, m):
        if self.rng.random() >= self.args.http_share:
            return False
        # Over its tier's request rate, or the HTTP senders are behind: this one goes over AMQP.
        return self.http.pending() < 4 * self.args.http_threads and self.buckets[m["merchant_id"]].take()

    # ------------------------------------------------------------ what a command looks like

    def pick_merchant(self, tiers=None):
        if tiers:
            pool = [m for t in tiers for m in self.by_tier[t]]
            if pool:
                return self.rng.choice(pool)
        return self.rng.choice(self.merchants)

    def currency(self, m):
        base = m["base_currency"]
        if self.rng.random() < 0.1:
            return self.rng.choice([c for c in ("USD", "CNY", "EUR") if c != base])
        return base

    def method_country(self, currency):
        if currency == "USD":
            return ("card", "US") if self.rng.random() < 0.6 else ("wallet", "US")
        if currency == "CNY":
            return ("wallet", "CN") if self.rng.random() < 0.6 else ("qr", "CN")
        return ("card", "DE")

    def amount(self, m, currency):
        tier = TIERS[m["tier"]]
        scale = 10 ** EXPONENT[currency]
        r = self.rng.random()
        heavy = 0.12 if m["tier"] in ("starter", "business") else 0.04
        if r < 0.01:
            major = tier["single"] * self.rng.uniform(1.05, 1.5)  # over the single limit
        elif r < 0.01 + heavy:
            major = tier["single"] * self.rng.uniform(0.3, 0.95)
        elif r < 0.3:
            major = self.rng.uniform(100, 2000)
        else:
            major = self.rng.uniform(1, 300)
        minor = int(major * scale) // 100 * 100
        e = self.rng.random()
        if e < 0.03:
            ending = 51  # declined
        elif e < 0.06:
            ending = 52  # pending: a notify, or the timeout sweep
        elif e < 0.075:
            ending = 53  # transient channel error: retried, then channel_error
        elif e < 0.095:
            ending = 54  # no answer: pending, the timeout sweep finds it succeeded
        else:
            ending = self.rng.choice([d for d in range(100) if d not in (51, 52, 53, 54)])
        return max(minor, 100) + ending

    def payment_data(self, m, order_no=None):
        currency = self.currency(m)
        method, country = self.method_country(currency)
        data = {"order_no": order_no or f"o-{self.run_tag}-{self.seq + 1}", "amount": self.amount(m, currency),
                "currency": currency, "country": country, "pay_method": method}
        r = self.rng.random()
        if r < 0.2:
            data["subject"] = self.rng.choice(["room 1208", "=SUM(A1)", "book, 2nd ed.", "咖啡"])
        if r < 0.1:
            data["metadata"] = {"cart": str(self.rng.randint(1, 10 ** 6))}
        if 0.1 <= r < 0.2:
            data["customer"] = {"id": f"cust-{self.rng.randint(1, 10 ** 6)}"}
        return data

    # ------------------------------------------------------------ command kinds

    def payment(self, m, order_no=None, label="payment"):
        data = self.payment_data(m, order_no)
        if self.want_http(m):
            rec = self.http_cmd("payment.create", m, "/api/v1/payments", data, key=self._key(label))
        else:
            rec = self.amqp("payment.create", m["merchant_id"], data, key=self._key(label))
        number = common.payment_no(m["merchant_id"], rec["key"])
        rec["resource"] = number
        self.sent_payments[m["merchant_id"]].append(number)
        self.orders[m["merchant_id"]].append(data["order_no"])
        return rec

    def preauth(self, m):
        data = self.payment_data(m)
        if self.rng.random() < 0.3:
            data["expires_in_seconds"] = self.rng.choice([3600, 86400, 7 * 86400, 30 * 86400])
        if self.want_http(m):
            rec = self.http_cmd("preauth.create", m, "/api/v1/merchant/pre-auth", data)
        else:
            rec = self.amqp("preauth.create", m["merchant_id"], data)
        number = common.pre_auth_no(m["merchant_id"], rec["key"])
        rec["resource"] = number
        self.sent_holds[m["merchant_id"]].append(number)
        return rec

    def capture(self, m):
        mid = m["merchant_id"]
        obs = self.observed
        number = None if self.rng.random() < 0.08 else obs.pick(self.rng, obs.open_holds[mid], obs.holds, OPEN_HOLD)
        if number is None:
            if not self.sent_holds[mid]:
                return None
            number, remaining = self.rng.choice(self.sent_holds[mid]), 10_000
        else:
            hold = obs.holds[number]
            remaining = max(1, hold["amount"] - hold["captured"])
        r = self.rng.random()
        data = {"pre_auth_no": number}
        if r < 0.4:
            data["amount"] = max(1, int(remaining * self.rng.uniform(0.1, 0.6)))
        elif r < 0.6:
            data["amount"] = max(1, int(remaining * self.rng.uniform(0.1, 0.9)))
            data["final"] = True
        elif r < 0.95:
            pass  # all that remains
        else:
            data["amount"] = remaining + self.rng.randint(1, 5000)  # above what remains: invalid_state
        if self.want_http(m):
            rec = self.http_cmd("preauth.capture", m, "/api/v1/merchant/pre-auth/capture", data)
        else:
            rec = self.amqp("preauth.capture", mid, data)
        rec["resource"] = common.capture_payment_no(mid, rec["key"])
        rec["pre_auth_no"] = number
        return rec

    def cancel(self, m):
        mid = m["merchant_id"]
        obs = self.observed
        r = self.rng.random()
        number = None
        if r < 0.85:
            number = obs.pick(self.rng, obs.open_holds[mid], obs.holds, OPEN_HOLD)
        elif r < 0.93 and obs.closed_holds[mid]:
            number = self.rng.choice(obs.closed_holds[mid])  # already over: invalid_state
        if number is None:
            if not self.sent_holds[mid]:
                return None
            number = self.rng.choice(self.sent_holds[mid])
        data = {"pre_auth_no": number, "reason": self.rng.choice(["guest checked out", "order cancelled", "chaos"])}
        if self.want_http(m):
            rec = self.http_cmd("preauth.cancel", m, "/api/v1/merchant/pre-auth/cancel", data)
        else:
            rec = self.amqp("preauth.cancel", mid, data)
        rec["pre_auth_no"] = number
        return rec

    def refund(self, m):
        mid = m["merchant_id"]
        obs = self.observed
        number = None if self.rng.random() < 0.08 else obs.pick(self.rng, obs.refundable[mid], obs.payments, REFUNDABLE)
        if number is None:
            if not self.sent_payments[mid]:
                return None
            number, remaining = self.rng.choice(self.sent_payments[mid]), 1_000
        else:
            p = obs.payments[number]
            remaining = max(1, p["amount"] - p["refunded"])
        r = self.rng.random()
        data = {"reason": "chaos refund"}
        if r < 0.45:
            data["amount"] = max(1, int(remaining * self.rng.uniform(0.05, 0.5)))
        elif r < 0.9:
            pass  # all that remains refundable
        else:
            data["amount"] = remaining + self.rng.randint(1, 1000)  # too much: invalid_state
        if self.want_http(m):
            rec = self.http_cmd("payment.refund", m, f"/api/v1/payments/{number}/refunds", data)
        else:
            rec = self.amqp("payment.refund", mid, dict(data, payment_no=number))
        rec["resource"] = common.refund_no(mid, rec["key"])
        rec["payment_no"] = number
        return rec

    def notify(self, m):
        """A channel's signed result for a pending payment (HTTP only: it is the channel's call)."""
        mid = m["merchant_id"]
        obs = self.observed
        number = None
        if self.rng.random() < 0.05 and obs.timed_out[mid]:
            number = self.rng.choice(obs.timed_out[mid])  # a late success: payment.reversed
        if number is None:
            number = obs.pick(self.rng, obs.pending[mid], obs.payments, ("pending",))
        if number is None:
            return None
        channel = obs.payments[number]["channel"] or "stripe"
        result = "succeeded" if self.rng.random() < 0.8 else "failed"
        body = json.dumps({"payment_no": number, "result": result, "channel_ref": f"ch-{self.run_tag}-{self.seq}"},
                          separators=(",", ":"))
        self.seq += 1
        recs = []
        for dup in range(2 if self.rng.random() < 0.1 else 1):  # a channel may call twice
            signature = hmac.new(self.stack.channel_secret.encode(), body.encode(), hashlib.sha256).hexdigest()
            rec = self._record("payment.complete", mid, common.notify_key(body), "http", False,
                               id=f"h-{self.run_tag}-{len(self.commands)}", payment_no=number, duplicate=bool(dup),
                               via="notify")
            self.http.submit(rec, "POST", f"/api/v1/channels/{channel}/notify", raw=body.encode(),
                             headers={"X-Channel-Signature": "sha256=" + signature, "Content-Type": "application/json"})
            recs.append(rec)
        return recs[0]

    def reorder(self, m):
        """A payment for an order an earlier payment named (paid, failed or cancelled)."""
        orders = self.orders[m["merchant_id"]]
        if not orders:
            return None
        return self.payment(m, order_no=self.rng.choice(orders), label="reorder")

    def malformed(self, m):
        mid = m["merchant_id"]
        variant = self.rng.randrange(8)
        data = self.payment_data(m)
        over_http = self.rng.random() < 0.1
        if over_http:
            if variant % 3 == 0:
                raw = json.dumps(data).encode()[:-7]  # cut short: not JSON
                return self.http_cmd("payment.create", m, "/api/v1/payments", None, invalid=True, raw=raw, variant="http-bad-json")
            if variant % 3 == 1:
                data.pop("amount")
                return self.http_cmd("payment.create", m, "/api/v1/payments", data, invalid=True, variant="http-missing-amount")
            data["ammount"] = data.pop("amount")
            return self.http_cmd("payment.create", m, "/api/v1/payments", data, invalid=True, variant="http-unknown-field")
        key = self._key("bad")
        cid = str(uuid.uuid4())
        envelope = {"specversion": "1.0", "id": cid, "type": "payment.create", "source": "/chaos/load", "time": iso(),
                    "merchantid": mid, "idempotencykey": key, "data": data}
        names = ["bad-json", "missing-amount", "amount-string", "unknown-field", "missing-merchantid", "bad-currency",
                 "bad-pre-auth-no", "wrong-specversion"]
        name = names[variant]
        body = None
        ctype = "payment.create"
        if name == "bad-json":
            body = json.dumps(envelope).encode()[: self.rng.randint(20, 80)]
        elif name == "missing-amount":
            data.pop("amount")
        elif name == "amount-string":
            data["amount"] = "12.50"
        elif name == "unknown-field":
            data["ammount"] = data.pop("amount")
        elif name == "missing-merchantid":
            envelope.pop("merchantid")
        elif name == "bad-currency":
            data["currency"] = "XXX"
        elif name == "bad-pre-auth-no":
            ctype = "preauth.capture"
            envelope["type"] = ctype
            envelope["data"] = {"pre_auth_no": "nonsense", "amount": -5}
        elif name == "wrong-specversion":
            envelope["specversion"] = "0.3"
        if body is None:
            body = json.dumps(envelope, separators=(",", ":")).encode()
        # The item keeps the envelope's id as message id: a rejection names it either way.
        item = {"id": cid, "type": ctype, "body": body}
        rec = self._record(ctype, mid if name != "missing-merchantid" else None, key, "amqp", True, id=cid, variant=name)
        rec["_item"] = item
        self.publisher.submit(item)
        return rec

    # ------------------------------------------------------------ scheduled commands

    def sweep(self, m):
        """A timeout sweep on this merchant's test clock, 31 minutes ahead: its pending payments
        time out (those that were left unanswered, `54`, succeed on the channel's word)."""
        return self.amqp("payment.timeout", m["merchant_id"], {"now": iso(time.time() + 31 * 60)}, key=self._key("sweep"))

    def export(self, m):
        today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        key = self._key("export")
        headers_key = key
        rec = self._record("export.run", m["merchant_id"], None, "http", False, id=f"h-{self.run_tag}-{len(self.commands)}",
                           http_key=headers_key)
        self.http.submit(rec, "POST", "/api/v1/merchant/payments/export",
                         body={"start_date": today, "end_date": today, "format": "csv"},
                         headers={"Authorization": "Bearer " + m["api_key"], "Idempotency-Key": headers_key})
        return rec

    def settlement(self):
        """Settle today now, on tomorrow's clock (sandbox): one settlement.merchant per merchant."""
        today = datetime.now(timezone.utc)
        tomorrow = (today + timedelta(days=1)).strftime("%Y-%m-%dT00:10:00Z")
        return self.amqp("settlement.run", None, {"date": today.strftime("%Y-%m-%d"), "now": tomorrow}, key=self._key("settlement"))

    # ------------------------------------------------------------ the run

    def schedule(self, total):
        """The scheduled commands as (position, what, merchant), a position being the number of
        commands sent before it: timeout sweeps of every merchant at 50% and 90%, an export at
        50% and one near the end, and the settlement run last."""
        plan = []
        for fraction in (0.5, 0.9):
            plan += [(int(total * fraction), "sweep", m) for m in self.merchants]
        plan.append((int(total * 0.5) + 1, "export", self.rng.choice(self.merchants)))
        plan.append((max(0, total - 2), "export", self.rng.choice(self.merchants)))
        plan.append((max(0, total - 1), "settlement", None))
        return sorted(plan, key=lambda p: p[0])

    def _scheduled(self, what, m):
        if what == "sweep":
            return self.sweep(m)
        if what == "export":
            return self.export(m)
        return self.settlement()

    def run(self, total, rate, max_backlog, stop):
        plan = self.schedule(total)
        t0 = time.time()
        while len(self.commands) < total and not stop.is_set():
            n = len(self.commands)
            delay = t0 + n / rate - time.time()
            if delay > 0:
                time.sleep(delay)
            while (self.publisher.backlog() > max_backlog or self.http.pending() > 50 * self.args.http_threads) \
                    and not stop.is_set():
                time.sleep(0.05)  # the broker is away: an upstream system would wait too
            if plan and plan[0][0] <= n:
                _, what, m = plan.pop(0)
                self._scheduled(what, m)
                continue
            kind = self.rng.choices(self.kinds, self.weights)[0]
            m = self.pick_merchant(("enterprise", "premium") if kind == "preauth" and self.rng.random() < 0.85 else None)
            if getattr(self, kind)(m) is None:
                self.payment(m)
        if not stop.is_set():
            for _, what, m in plan:  # positions past the end (a notify sent twice): still sent, settlement last
                self._scheduled(what, m)
