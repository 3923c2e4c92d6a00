"""AMQP for the chaos harness: a publisher with confirms and a publish window that rides out
broker restarts, and an event subscriber on a durable quorum queue that writes every event it
gets to a JSON-lines file.

Both reconnect by themselves. The publisher re-publishes every message whose confirm it did not
get (same message id and body: PayFleet deduplicates on the idempotency key, and the event id is
derived from the command id, so a re-publish can never double an effect or an event).
"""

import collections
import json
import threading
import time

import pika
import pika.exceptions

COMMANDS = "payfleet.commands"
EVENTS = "payfleet.events"
CONTENT_TYPE = "application/cloudevents+json"


def connection_parameters(url):
    """pika parameters for the harness's connections: fail fast (one attempt, 5 s socket
    timeout) and notice a dead broker within a minute (20 s heartbeat); the callers reconnect."""
    params = pika.URLParameters(url)
    params.heartbeat = 20
    params.connection_attempts = 1
    params.socket_timeout = 5
    return params

class Publisher(threading.Thread):
    """Publishes submitted commands with publisher confirms, at most `window` unconfirmed.

    An item is a dict with `id`, `type` (the routing key and AMQP type), `body` (bytes); the
    publisher adds `published_at` (first publish), `confirmed_at` (its confirm) and `attempts`.
    """

    def __init__(self, url, user_id, window=1000, log=print):
        super().__init__(name="publisher", daemon=True)
        self.params = connection_parameters(url)
        self.user_id = user_id
        self.window = window
        self.log = log
        self.incoming = collections.deque()
        self.retry = collections.deque()
        self.unconfirmed = collections.OrderedDict()  # delivery tag -> item
        self.next_tag = 1
        self.conn = None
        self.ch = None
        self.ready = False
        self.stopping = False
        self.stats = collections.Counter()
        self.connected = threading.Event()

    # -- called from other threads

    def submit(self, item):
        item.setdefault("attempts", 0)
        self.incoming.append(item)

    def backlog(self):
        return len(self.incoming) + len(self.retry) + len(self.unconfirmed)

    def stop(self, timeout=60):
        """Stop once everything submitted is confirmed (or after `timeout`)."""
        deadline = time.time() + timeout
        while self.backlog() and time.time() < deadline:
            time.sleep(0.1)
        self.stopping = True
        conn = self.conn
        if conn is not None:
            try:
                conn.ioloop.add_callback_threadsafe(self._close)
            except Exception:
                pass
        self.join(timeout=10)

    # -- the I/O thread

    def run(self):
        while True:
            self.ready = False
            try:
                self.conn = pika.SelectConnection(self.params, on_open_callback=self._on_open,
                                                  on_open_error_callback=self._on_open_error,
                                                  on_close_callback=self._on_closed)
                self.conn.ioloop.start()
            except Exception as error:  # pragma: no cover - defensive
                self.log(f"publisher: connection loop failed: {error!r}")
            self.ready = False
            self.connected.clear()
            # Whatever was not confirmed goes out again, in order, ahead of new work.
            if self.unconfirmed:
                self.stats["republished"] += len(self.unconfirmed)
                self.retry.extendleft(reversed(list(self.unconfirmed.values())))
                self.unconfirmed.clear()
            if self.stopping:
                return
            time.sleep(1)

    def _close(self):
        try:
            if self.conn is not None and not self.conn.is_closed:
                self.conn.close()
        except Exception:
            pass

    def _on_open(self, conn):
        conn.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, conn, error):
        self.stats["connect_failures"] += 1
        conn.ioloop.stop()

    def _on_closed(self, conn, reason):
        self.ch = None
        self.ready = False
        conn.ioloop.stop()

    def _on_channel(self, ch):
        self.ch = ch
        ch.add_on_close_callback(self._on_channel_closed)
        ch.add_on_return_callback(self._on_return)
        ch.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_mode)

    def _on_channel_closed(self, ch, reason):
        self.ready = False
        if not self.stopping:
            self.log(f"publisher: channel closed: {reason}")
        self._close()

    def _on_confirm_mode(self, frame):
        self.next_tag = 1
        self.ready = True
        self.stats["connections"] += 1
        self.connected.set()
        self._pump()

    def _pump(self):
        if self.conn is None or self.conn.is_closed:
            return
        if self.ready and self.ch is not None and self.ch.is_open:
            sent = 0
            while len(self.unconfirmed) < self.window and sent < 500:
                if self.retry:
                    item = self.retry.popleft()
                elif self.incoming:
                    item = self.incoming.popleft()
                else:
                    break
                self._publish(item)
                sent += 1
        if self.stopping and not self.backlog():
            self._close()
            return
        self.conn.ioloop.call_later(0.002 if self.incoming or self.retry else 0.01, self._pump)

    def _publish(self, item):
        props = pika.BasicProperties(content_type=CONTENT_TYPE, delivery_mode=2, message_id=item["id"],
                                     type=item["type"], user_id=self.user_id, timestamp=int(time.time()))
        try:
            self.ch.basic_publish(COMMANDS, item["type"], item["body"], props, mandatory=True)
        except Exception as error:
            self.log(f"publisher: publish failed: {error!r}")
            self.retry.appendleft(item)
            self._close()
            return
        if "published_at" not in item:
            item["published_at"] = time.time()
        item["attempts"] += 1
        self.unconfirmed[self.next_tag] = item
        self.next_tag += 1
        self.stats["published"] += 1

    def _on_confirm(self, frame):
        method = frame.method
        tag, multiple = method.delivery_tag, getattr(method, "multiple", False)
        acked = isinstance(method, pika.spec.Basic.Ack)
        if multiple:
            tags = []
            for t in self.unconfirmed:
                if t > tag:
                    break
                tags.append(t)
        else:
            tags = [tag] if tag in self.unconfirmed else []
        at = time.time()
        for t in tags:
            item = self.unconfirmed.pop(t)
            if acked and not item.pop("returned", False):
                item.setdefault("confirmed_at", at)
                self.stats["confirmed"] += 1
            else:
                # Nacked, or returned unroutable: send it again (same id, same body).
                self.stats["nacked" if not acked else "returned_republished"] += 1
                self.retry.append(item)

    def _on_return(self, ch, method, props, body):
        self.stats["returned"] += 1
        for item in self.unconfirmed.values():
            if item["id"] == props.message_id:
                item["returned"] = True
                break


def event_record(method, props, body, received_at):
    """What the events log keeps of one delivery: the envelope's identity and the resource
    (data without the bulky routing decision record)."""
    try:
        event = json.loads(body)
    except ValueError:
        return {"bad": body[:200].decode(errors="replace"), "rk": method.routing_key, "recv": received_at}
    data = event.get("data")
    if isinstance(data, dict):
        data.pop("routing", None)
    return {"id": event.get("id"), "type": event.get("type"), "rk": method.routing_key,
            "corr": props.correlation_id, "mid": event.get("merchantid"), "time": event.get("time"),
            "recv": round(received_at, 4), "data": data}


class Subscriber(threading.Thread):
    """Consumes a durable quorum queue bound to every event (`#`) and writes each delivery to a
    JSON-lines file (duplicates included: delivery is at least once), acking after the write.
    `on_event(record)` is called for each one, on this thread."""

    def __init__(self, url, queue, path, on_event=None, log=print, prefetch=2000):
        super().__init__(name="subscriber", daemon=True)
        self.params = connection_parameters(url)
        self.queue = queue
        self.path = path
        self.on_event = on_event
        self.log = log
        self.prefetch = prefetch
        self.stopping = False
        self.idle = threading.Event()
        self.stats = collections.Counter()
        self.last_delivery = 0.0

    def declare(self):
        """Declares the queue and its binding (before the load, so nothing is missed)."""
        conn = pika.BlockingConnection(self.params)
        ch = conn.channel()
        ch.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_bind(self.queue, EVENTS, "#")
        conn.close()

    def depth(self):
        """Messages ready in the queue (passive declare), or None when the broker is away."""
        try:
            conn = pika.BlockingConnection(self.params)
            ch = conn.channel()
            count = ch.queue_declare(self.queue, passive=True).method.message_count
            conn.close()
            return count
        except Exception:
            return None

    def run(self):
        out = open(self.path, "a", buffering=1 << 20)
        failing = False
        try:
            while not self.stopping:
                try:
                    self._consume(out)
                    failing = False
                except (pika.exceptions.AMQPError, OSError) as error:
                    self.stats["reconnects"] += 1
                    if not failing:  # once per outage
                        self.log(f"subscriber: {type(error).__name__}: {error or 'connection lost'}; reconnecting")
                    failing = True
                    out.flush()
                    time.sleep(1)
        finally:
            out.flush()
            out.close()

    def _consume(self, out):
        conn = pika.BlockingConnection(self.params)
        try:
            ch = conn.channel()
            ch.basic_qos(prefetch_count=self.prefetch)
            ch.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
            ch.queue_bind(self.queue, EVENTS, "#")
            last_tag, pending = None, 0
            for method, props, body in ch.consume(self.queue, inactivity_timeout=0.25):
                if method is None:
                    if pending:
                        out.flush()
                        ch.basic_ack(last_tag, multiple=True)
                        pending = 0
                    self.idle.set()
                    if self.stopping:
                        break
                    continue
                self.idle.clear()
                at = time.time()
                self.last_delivery = at
                record = event_record(method, props, body, at)
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
                self.stats["deliveries"] += 1
                if method.redelivered:
                    self.stats["redelivered"] += 1
                if self.on_event is not None:
                    try:
                        self.on_event(record)
                    except Exception as error:  # pragma: no cover - defensive
                        self.log(f"subscriber: on_event failed: {error!r}")
                last_tag, pending = method.delivery_tag, pending + 1
                if pending >= 200:
                    out.flush()
                    ch.basic_ack(last_tag, multiple=True)
                    pending = 0
            ch.cancel()
        finally:
            try:
                conn.close()
            except Exception:
                pass


def peek_parked(url, queue="payfleet.parked", limit=1_000_000):
    """Every message in the parking queue, read without taking it away (got unacked, then the
    channel closes and the broker puts them back): a list of dicts with message id, type, headers."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    out = []
    try:
        while len(out) < limit:
            method, props, body = ch.basic_get(queue, auto_ack=False)
            if method is None:
                break
            headers = {}
            for key, value in (props.headers or {}).items():
                if isinstance(value, bytes):
                    value = value.decode(errors="replace")
                headers[key] = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
            out.append({"message_id": props.message_id, "type": props.type, "headers": headers,
                        "body": body[:300].decode(errors="replace")})
    finally:
        conn.close()
    return out
