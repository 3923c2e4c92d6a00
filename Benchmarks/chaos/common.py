"""Shared helpers of the chaos harness: the stack's settings, derived ids, JSON lines, HTTP.

The harness talks to a stack started by deploy/local/up.sh; everything it needs to find that
stack is in the stack's state dir (`<state>/env`, written by up.sh, and `<state>/chaos.json`,
written by Benchmarks/chaos.sh with the ports up.sh was given).
"""

import base64
import hashlib
import http.client
import json
import os
import shlex
import time
import urllib.parse
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# RULES: tier limits in MAJOR units of the base currency; fee in basis points.
TIERS = {
    "starter": {"single": 10_000, "daily": 100_000, "monthly": 300_000, "fee_bps": 80, "per_minute": 100},
    "business": {"single": 50_000, "daily": 500_000, "monthly": 1_500_000, "fee_bps": 60, "per_minute": 500},
    "enterprise": {"single": 200_000, "daily": 2_000_000, "monthly": 6_000_000, "fee_bps": 45, "per_minute": 2_000},
    "premium": {"single": 1_000_000, "daily": 10_000_000, "monthly": 30_000_000, "fee_bps": 30, "per_minute": 10_000},
}
# Minor units per major unit of the fiat base currencies the harness uses.
EXPONENT = {"USD": 2, "CNY": 2, "EUR": 2, "GBP": 2, "JPY": 0, "SGD": 2}


def now():
    return time.time()


def iso(ts=None):
    """RFC 3339 UTC with milliseconds."""
    ts = now() if ts is None else ts
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def parse_iso(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_env_file(path):
    """The `export K=V` lines of up.sh's env file (values quoted by bash printf %q)."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("export "):
                continue
            name, _, value = line[len("export "):].partition("=")
            parts = shlex.split(value) if value else [""]
            env[name] = parts[0] if parts else ""
    return env


class Stack:
    """Where a stack's servers are, read from its state dir."""

    def __init__(self, state_dir):
        self.state_dir = os.path.abspath(state_dir)
        self.env = read_env_file(os.path.join(self.state_dir, "env"))
        extra = os.path.join(self.state_dir, "chaos.json")
        self.ports = json.load(open(extra)) if os.path.exists(extra) else {}
        self.amqp_url = self.env["PAYFLEET_AMQP_URL"]
        self.database_url = self.env["PAYFLEET_DATABASE_URL"]
        self.redis_url = self.env["PAYFLEET_REDIS_URL"]
        self.http_port = int(self.env.get("PAYFLEET_HTTP_PORT", "8080"))
        self.admin_token = self.env.get("PAYFLEET_ADMIN_TOKEN") or open(os.path.join(self.state_dir, "admin-token")).read().strip()
        self.channel_secret = self.env.get("PAYFLEET_CHANNEL_SECRET") or open(os.path.join(self.state_dir, "channel-secret")).read().strip()
        self.amqp_user = urllib.parse.urlparse(self.amqp_url).username or "payfleet"

    @property
    def pg_dsn(self):
        """How the harness itself reads PostgreSQL: as the superuser over the stack's private unix
        socket when it can (lib.sh's initdb trusts local connections), so that it still gets in
        when the fleet has taken every ordinary connection slot; else the fleet's URL."""
        sock = os.path.join(self.state_dir, "pgsock")
        port = urllib.parse.urlparse(self.database_url).port or 5432
        if os.geteuid() == 0 and os.path.exists(os.path.join(sock, f".s.PGSQL.{port}")):
            return f"host={sock} port={port} user=postgres dbname=payfleet"
        return self.database_url

    @property
    def redis_port(self):
        return urllib.parse.urlparse(self.redis_url).port or 6379


# ---------------------------------------------------------------- derived ids (Sources/Payments/Identifiers.swift)

_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def _base32(data):
    out, buffer, bits = [], 0, 0
    for byte in data:
        buffer = (buffer << 8) | byte
        bits += 8
        while bits >= 5:
            out.append(_ALPHABET[(buffer >> (bits - 5)) & 31])
            bits -= 5
    if bits > 0:
        out.append(_ALPHABET[(buffer << (5 - bits)) & 31])
    return "".join(out)


def _digest(text):
    return hashlib.sha256(text.encode()).digest()


def payment_no(merchant_id, key):
    return "pay_" + _base32(_digest(f"payment|{merchant_id}|{key}")[:16])


def pre_auth_no(merchant_id, key):
    return "pa_" + _base32(_digest(f"preauth|{merchant_id}|{key}")[:16])


def capture_payment_no(merchant_id, key):
    return "pay_" + _base32(_digest(f"capture|{merchant_id}|{key}")[:16])


def refund_no(merchant_id, key):
    return "re_" + _base32(_digest(f"refund|{merchant_id}|{key}")[:16])


def notify_key(body):
    """The idempotency key the ingress gives a notify's payment.complete (LifecycleRoutes.swift)."""
    return "notify:" + hashlib.sha256(body.encode()).hexdigest()[:40]


# ---------------------------------------------------------------- JSON lines

def read_jsonl(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")


# ---------------------------------------------------------------- HTTP

class HTTP:
    """A tiny keep-alive JSON client for the ingress (one per thread)."""

    def __init__(self, port, timeout=30):
        self.port, self.timeout, self.conn = port, timeout, None

    def request(self, method, path, body=None, headers=None, raw=None):
        """(status, headers, parsed body or text); raises OSError/HTTPException on connection trouble."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                text = resp.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                # A kept-alive connection the server closed: one fresh try; else the caller's problem.
                if attempt:
                    raise
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text.decode(errors="replace")
        return resp.status, dict(resp.getheaders()), parsed

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
