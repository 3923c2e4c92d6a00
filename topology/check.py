#!/usr/bin/env python3
"""Check PayFleet's message contract files in topology/.

* every schemas/*.json is a valid JSON Schema draft 2020-12 document with the
  expected $id (https://payfleet.dev/schemas/<file>), a title and a description;
* every $ref in them resolves locally (a referencing.Registry built from the
  files themselves; nothing is fetched);
* every example embedded in a schema's `examples` is valid, formats included
  (every schema but common.json must have at least one);
* known-bad instances are rejected and known-good edge cases accepted;
* preauth.create's data is payment.create's plus expires_in_seconds, member
  for member (each a $ref to payment.create's definition);
* asyncapi.yaml parses, is AsyncAPI 3.0.0, every $ref in it points to an
  existing file (and JSON pointer), operations only use their channel's
  messages, every message schema in schemas/ is used, its message
  examples validate against the referenced schemas, and a message's name,
  its AMQP messageType and its schema's type are the same;
* when definitions.json (the RabbitMQ definitions) is beside it, the
  exchanges, queues, queue arguments and bindings asyncapi.yaml documents are
  the ones it declares, every command work queue is documented, every
  command type bound to a work queue has a message schema and a command
  channel, and the commands a queue channel lists are bound to that queue;
* merchant events require merchantid and system events (sys.<type>) refuse it.

Needs jsonschema (>= 4.18, for referencing) and PyYAML. Exits non-zero on any
failure; the last line is `schemas: N passed, M failed`.
"""

import copy
import json
import sys
from pathlib import Path

try:
    import yaml
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError
    from referencing import Registry, Resource
    from referencing.exceptions import Unresolvable
except ImportError as exc:  # pragma: no cover
    print(f"missing dependency: {exc}; pip install jsonschema pyyaml", file=sys.stderr)
    sys.exit(2)

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"
ASYNCAPI = HERE / "asyncapi.yaml"
BASE = "https://payfleet.dev/schemas/"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
FORMATS = Draft202012Validator.FORMAT_CHECKER
# Building blocks that are not messages or resources on their own.
LIBRARIES = {"common.json"}
# Message schemas: each must be the payload of an AsyncAPI message.
MESSAGES = {
    # merchant commands
    "payment.create.json",
    "preauth.create.json",
    "preauth.capture.json",
    "preauth.cancel.json",
    "payment.refund.json",
    "payment.complete.json",
    "settlement.merchant.json",
    "export.run.json",
    # system commands (envelope: system_command.json)
    "payment.timeout.json",
    "preauth.expire.json",
    "settlement.run.json",
    "archive.run.json",
    "export.cleanup.json",
    "retention.prune.json",
    # events
    "payment.succeeded.json",
    "payment.pending.json",
    "payment.failed.json",
    "payment.timed_out.json",
    "payment.refunded.json",
    "payment.reversed.json",
    "preauth.authorized.json",
    "preauth.failed.json",
    "preauth.captured.json",
    "preauth.cancelled.json",
    "preauth.expired.json",
    "sweep.completed.json",
    "command.rejected.json",
    "order.updated.json",
    "settlement.created.json",
    "settlement.merchant.completed.json",
    "export.progress.json",
    "export.completed.json",
    "export.failed.json",
    # system events (routing key sys.<type>, never merchantid)
    "settlement.run.completed.json",
    "archive.progress.json",
    "archive.completed.json",
    "export.cleanup.completed.json",
    "retention.pruned.json",
}
# Events that always concern one merchant (m.<merchant_id>.<type>): merchantid is required.
MERCHANT_EVENTS = {
    "payment.succeeded.json", "payment.pending.json", "payment.failed.json", "payment.timed_out.json",
    "payment.refunded.json", "payment.reversed.json", "preauth.authorized.json", "preauth.failed.json",
    "preauth.captured.json", "preauth.cancelled.json", "preauth.expired.json", "order.updated.json",
    "settlement.created.json", "settlement.merchant.completed.json", "export.progress.json",
    "export.completed.json", "export.failed.json",
}
# Events that never concern a merchant (sys.<type>): merchantid is refused.
SYSTEM_EVENTS = {
    "settlement.run.completed.json", "archive.progress.json", "archive.completed.json",
    "export.cleanup.completed.json", "retention.pruned.json",
}
# Resources and shared envelopes: not messages themselves, but must exist.
RESOURCES = {"cloudevent.json", "system_command.json", "payment.json", "pre_authorization.json",
             "merchant.json", "problem.json", "order.json", "settlement.json", "settlement_line.json",
             "export_task.json"}

passed = 0
failed = 0


def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what}" + (f": {detail}" if detail else ""))


def walk_refs(node, path=""):
    """Yield (json path, $ref value) for every $ref in a JSON/YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield path or "/", value
            else:
                yield from walk_refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_refs(value, f"{path}/{i}")


def pointer(doc, frag):
    """Resolve a JSON pointer fragment ('/a/b') in doc; raise KeyError/IndexError."""
    node = doc
    if not frag:
        return node
    for raw in frag.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def errors_of(validator, instance):
    return sorted(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(instance)
    )


# --------------------------------------------------------------------------
# 1. load the schemas, check them against the 2020-12 metaschema
schemas = {}
for path in sorted(SCHEMAS.glob("*.json")):
    try:
        schemas[path.name] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        check(False, f"{path.name} parses as JSON", str(exc))
check(bool(schemas), "schemas/ holds schema files")
for name in sorted(MESSAGES | RESOURCES):
    check(name in schemas, f"schemas/{name} exists")

for name, schema in schemas.items():
    check(schema.get("$schema") == DIALECT, f"{name} declares draft 2020-12", schema.get("$schema"))
    check(schema.get("$id") == BASE + name, f"{name} $id", schema.get("$id"))
    check(bool(schema.get("title")), f"{name} has a title")
    check(bool(schema.get("description")), f"{name} has a description")
    try:
        Draft202012Validator.check_schema(schema)
        check(True, f"{name} is a valid 2020-12 schema")
    except SchemaError as exc:
        check(False, f"{name} is a valid 2020-12 schema", exc.message)

registry = Registry().with_resources(
    (schema.get("$id", BASE + name), Resource.from_contents(schema))
    for name, schema in schemas.items()
)

# --------------------------------------------------------------------------
# 2. every $ref resolves locally (no nested $id is used, so the base is $id)
for name, schema in schemas.items():
    resolver = registry.resolver(base_uri=schema.get("$id", BASE + name))
    for where, ref in walk_refs(schema):
        try:
            resolver.lookup(ref)
            check(True, f"{name}{where} $ref {ref}")
        except Unresolvable as exc:
            check(False, f"{name}{where} $ref {ref} resolves", repr(exc))


def validator_for(name):
    return Draft202012Validator(schemas[name], registry=registry, format_checker=FORMATS)


validators = {name: validator_for(name) for name in schemas}

# --------------------------------------------------------------------------
# 3. embedded examples are valid
for name, schema in schemas.items():
    examples = schema.get("examples", [])
    if name not in LIBRARIES:
        check(len(examples) >= 1, f"{name} has at least one example")
    for i, example in enumerate(examples):
        errs = errors_of(validators[name], example)
        check(not errs, f"{name} examples[{i}] is valid", "; ".join(errs))

# The payment.create example the integrator docs promise.
create_example = schemas.get("payment.create.json", {}).get("examples", [{}])[0]
check(
    create_example.get("data") == {
        "order_no": "order-1001", "amount": 5000, "currency": "USD",
        "country": "US", "pay_method": "card",
    } and create_example.get("specversion") == "1.0",
    "payment.create examples[0] is the order-1001 full envelope",
)

# preauth.create data = payment.create data + expires_in_seconds, member for member.
pc = schemas.get("payment.create.json", {}).get("$defs", {}).get("data", {})
pa = schemas.get("preauth.create.json", {}).get("$defs", {}).get("data", {})
if pc and pa:
    check(pa.get("required") == pc.get("required"), "preauth.create data requires what payment.create data requires",
          f"{pa.get('required')} != {pc.get('required')}")
    check(set(pa.get("properties", {})) == set(pc.get("properties", {})) | {"expires_in_seconds"},
          "preauth.create data has payment.create's members plus expires_in_seconds",
          sorted(set(pa.get("properties", {})) ^ (set(pc.get("properties", {})) | {"expires_in_seconds"})))
    for member in sorted(pc.get("properties", {})):
        ref = pa.get("properties", {}).get(member, {}).get("$ref")
        check(ref == f"payment.create.json#/$defs/data/properties/{member}",
              f"preauth.create data.{member} refers to payment.create's definition", ref)
    check(pa.get("additionalProperties") is False and pc.get("additionalProperties") is False,
          "payment.create and preauth.create data are closed")
else:
    check(False, "payment.create.json and preauth.create.json define $defs/data")


def type_const(schema):
    """The const of `type` in a message schema's allOf (None when it has none)."""
    for part in schema.get("allOf", []):
        const = part.get("properties", {}).get("type", {}).get("const")
        if const:
            return const
    return None


for name in sorted(MESSAGES):
    check(type_const(schemas.get(name, {})) == name.removesuffix(".json"),
          f"{name} fixes type to {name.removesuffix('.json')}", type_const(schemas.get(name, {})))

# --------------------------------------------------------------------------
# 4. known-bad instances fail, known-good edge cases pass


def variant(name, mutate, example=0):
    instance = copy.deepcopy(schemas[name]["examples"][example])
    mutate(instance)
    return instance


def set_data(key, value):
    def mutate(event):
        event["data"][key] = value
    return mutate


def set_top(key, value):
    def mutate(event):
        event[key] = value
    return mutate


def delete(*path):
    def mutate(event):
        node = event
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return mutate


def set_payment(key, value):
    def mutate(event):
        event["data"][key] = value
    return mutate


INT64_MAX = 9223372036854775807
BAD = [
    # payment.create: data
    ("payment.create.json", "amount 0", set_data("amount", 0)),
    ("payment.create.json", "amount -1", set_data("amount", -1)),
    ("payment.create.json", "amount Int64.max + 1", set_data("amount", INT64_MAX + 1)),
    ("payment.create.json", "amount 50.5", set_data("amount", 50.5)),
    ("payment.create.json", "amount as a string", set_data("amount", "5000")),
    ("payment.create.json", "currency XXX", set_data("currency", "XXX")),
    ("payment.create.json", "currency lower case", set_data("currency", "usd")),
    ("payment.create.json", "order_no empty", set_data("order_no", "")),
    ("payment.create.json", "order_no 65 characters", set_data("order_no", "x" * 65)),
    ("payment.create.json", "order_no with a newline", set_data("order_no", "order\n1001")),
    ("payment.create.json", "order_no with NUL", set_data("order_no", "order\u00001001")),
    ("payment.create.json", "order_no with DEL", set_data("order_no", "order\u007f")),
    ("payment.create.json", "country us", set_data("country", "us")),
    ("payment.create.json", "country USA", set_data("country", "USA")),
    ("payment.create.json", "pay_method cash", set_data("pay_method", "cash")),
    ("payment.create.json", "channel unknown", set_data("channel", "venmo")),
    ("payment.create.json", "routing_mode unknown", set_data("routing_mode", "cheapest")),
    ("payment.create.json", "subject 257 characters", set_data("subject", "s" * 257)),
    ("payment.create.json", "unknown data field", set_data("ammount", 5000)),
    ("payment.create.json", "unknown customer field", set_data("customer", {"phone": "1"})),
    ("payment.create.json", "metadata number value", set_data("metadata", {"k": 1})),
    ("payment.create.json", "metadata value 501 characters", set_data("metadata", {"k": "v" * 501})),
    ("payment.create.json", "metadata key 41 characters", set_data("metadata", {"k" * 41: "v"})),
    ("payment.create.json", "metadata 51 keys", set_data("metadata", {f"k{i}": "v" for i in range(51)})),
    ("payment.create.json", "missing amount", delete("data", "amount")),
    ("payment.create.json", "missing order_no", delete("data", "order_no")),
    ("payment.create.json", "missing currency", delete("data", "currency")),
    ("payment.create.json", "missing country", delete("data", "country")),
    ("payment.create.json", "missing pay_method", delete("data", "pay_method")),
    # payment.create: envelope
    ("payment.create.json", "missing merchantid", delete("merchantid")),
    ("payment.create.json", "merchantid with a dot", set_top("merchantid", "mch.1")),
    ("payment.create.json", "merchantid empty", set_top("merchantid", "")),
    ("payment.create.json", "wrong type", set_top("type", "payment.refund")),
    ("payment.create.json", "specversion 0.3", set_top("specversion", "0.3")),
    ("payment.create.json", "missing id", delete("id")),
    ("payment.create.json", "empty id", set_top("id", "")),
    ("payment.create.json", "id 256 characters", set_top("id", "i" * 256)),
    ("payment.create.json", "missing source", delete("source")),
    ("payment.create.json", "missing data", delete("data")),
    ("payment.create.json", "data not an object", set_top("data", "order-1001")),
    ("payment.create.json", "time not RFC 3339", set_top("time", "2026-11-25 01:02:03")),
    ("payment.create.json", "datacontenttype text/plain", set_top("datacontenttype", "text/plain")),
    ("payment.create.json", "idempotencykey empty", set_top("idempotencykey", "")),
    ("payment.create.json", "idempotencykey 256 characters", set_top("idempotencykey", "k" * 256)),
    ("payment.create.json", "traceparent malformed", set_top("traceparent", "00-abc-01")),
    ("payment.create.json", "misspelt envelope member merchant_id", set_top("merchant_id", "mch_1")),
    ("payment.create.json", "upper-case envelope member", set_top("merchantId", "mch_1")),
    ("payment.create.json", "data_base64 instead of data", set_top("data_base64", "e30=")),
    ("payment.create.json", "object-valued extension attribute", set_top("extra", {"a": 1})),
    # events and resources
    ("payment.succeeded.json", "succeeded event whose payment failed", set_payment("status", "failed")),
    ("payment.succeeded.json", "succeeded event without merchantid", delete("merchantid")),
    ("payment.succeeded.json", "succeeded event without time", delete("time")),
    ("payment.succeeded.json", "payment version 0", set_payment("version", 0)),
    ("payment.succeeded.json", "payment_no without pay_ prefix", set_payment("payment_no", "p_123")),
    ("payment.succeeded.json", "payment status unknown", set_payment("status", "done")),
    ("payment.succeeded.json", "payment without routing member", delete("data", "routing")),
    ("payment.succeeded.json", "routing strategy unknown",
     lambda e: e["data"]["routing"].__setitem__("strategy", "random")),
    ("payment.succeeded.json", "created_at not UTC", set_payment("created_at", "2026-11-25T09:02:03+08:00")),
    ("payment.succeeded.json", "negative channel_fee", set_payment("channel_fee", -1)),
    ("payment.pending.json", "pending event whose payment succeeded", set_payment("status", "succeeded")),
    ("payment.failed.json", "failed event without failure_code", set_payment("failure_code", None)),
    ("payment.failed.json", "failed event whose payment succeeded", set_payment("status", "succeeded")),
    ("command.rejected.json", "unknown rejection code", set_data("code", "oops")),
    ("command.rejected.json", "rejection without errors", delete("data", "errors")),
    ("command.rejected.json", "field error without field",
     set_data("errors", [{"message": "bad"}])),
    ("merchant.json", "merchant tier gold", lambda m: m.__setitem__("tier", "gold")),
    ("merchant.json", "merchant auto_settlement as a string", lambda m: m.__setitem__("auto_settlement", "yes")),
    ("merchant.json", "merchant without name", lambda m: m.__delitem__("name")),
    ("problem.json", "problem without code", lambda p: p.__delitem__("code")),
    ("problem.json", "problem status 99", lambda p: p.__setitem__("status", 99)),
    ("problem.json", "pre_authorization member with status pending",
     lambda p: p["pre_authorization"].__setitem__("status", "pending"), 2),
    # payment resource (through payment.succeeded)
    ("payment.succeeded.json", "payment_no of 25 characters", set_payment("payment_no", "pay_" + "a" * 25)),
    ("payment.succeeded.json", "payment_no with a digit outside base32", set_payment("payment_no", "pay_" + "a" * 25 + "1")),
    ("payment.succeeded.json", "pre_auth_no that is a payment number",
     set_payment("pre_auth_no", "pay_qpw7feitnfna5cny7ee3g577da")),
    # preauth.create
    ("preauth.create.json", "expires_in_seconds 2592001 (over 30 days)", set_data("expires_in_seconds", 2592001)),
    ("preauth.create.json", "expires_in_seconds 59", set_data("expires_in_seconds", 59)),
    ("preauth.create.json", "expires_in_seconds 3600.5", set_data("expires_in_seconds", 3600.5)),
    ("preauth.create.json", "expires_in_seconds as a string", set_data("expires_in_seconds", "3600")),
    ("preauth.create.json", "amount 0 (payment.create's rule)", set_data("amount", 0)),
    ("preauth.create.json", "currency XXX (payment.create's rule)", set_data("currency", "XXX")),
    ("preauth.create.json", "unknown data field", set_data("expires_at", "2026-12-01T00:00:00Z")),
    ("preauth.create.json", "missing order_no", delete("data", "order_no")),
    ("preauth.create.json", "missing merchantid", delete("merchantid")),
    ("preauth.create.json", "wrong type", set_top("type", "payment.create")),
    # preauth.capture
    ("preauth.capture.json", "capture amount 0", set_data("amount", 0)),
    ("preauth.capture.json", "capture amount -5", set_data("amount", -5)),
    ("preauth.capture.json", "capture without pre_auth_no", delete("data", "pre_auth_no")),
    ("preauth.capture.json", "pre_auth_no that is a payment number", set_data("pre_auth_no", "pay_qpw7feitnfna5cny7ee3g577da")),
    ("preauth.capture.json", "pre_auth_no in upper case", set_data("pre_auth_no", "pa_GNQ3MRATG6D4L4G2ZXTJCAL6HY")),
    ("preauth.capture.json", "final as a string", set_data("final", "true")),
    ("preauth.capture.json", "unknown data field", set_data("release", True)),
    ("preauth.capture.json", "missing merchantid", delete("merchantid")),
    # preauth.cancel
    ("preauth.cancel.json", "cancel without reason", delete("data", "reason")),
    ("preauth.cancel.json", "reason empty", set_data("reason", "")),
    ("preauth.cancel.json", "reason 501 characters", set_data("reason", "r" * 501)),
    ("preauth.cancel.json", "reason with a newline", set_data("reason", "guest\nleft")),
    ("preauth.cancel.json", "cancel without pre_auth_no", delete("data", "pre_auth_no")),
    ("preauth.cancel.json", "missing merchantid", delete("merchantid")),
    # payment.refund
    ("payment.refund.json", "payment_no not pay_ + 26 base32 characters", set_data("payment_no", "pay_123")),
    ("payment.refund.json", "payment_no that is a pre-authorization number",
     set_data("payment_no", "pa_gnq3mratg6d4l4g2zxtjcal6hy")),
    ("payment.refund.json", "refund without payment_no", delete("data", "payment_no")),
    ("payment.refund.json", "refund amount 0", set_data("amount", 0)),
    ("payment.refund.json", "reason 501 characters", set_data("reason", "r" * 501)),
    ("payment.refund.json", "reason empty", set_data("reason", "")),
    ("payment.refund.json", "unknown data field", set_data("currency", "USD")),
    ("payment.refund.json", "missing merchantid", delete("merchantid")),
    # payment.complete
    ("payment.complete.json", "result maybe", set_data("result", "maybe")),
    ("payment.complete.json", "result pending", set_data("result", "pending")),
    ("payment.complete.json", "without channel_ref", delete("data", "channel_ref")),
    ("payment.complete.json", "channel_ref 129 characters", set_data("channel_ref", "c" * 129)),
    ("payment.complete.json", "channel_ref with a control character", set_data("channel_ref", "ch_\u0007")),
    ("payment.complete.json", "without result", delete("data", "result")),
    ("payment.complete.json", "unknown data field", set_data("amount", 5052)),
    ("payment.complete.json", "missing merchantid", delete("merchantid")),
    # payment.timeout (examples: 0 the clock's sweep, 1 one payment, 2 a continuation)
    ("payment.timeout.json", "sweep with both payment_no and after",
     set_top("data", {"payment_no": "pay_r3mty5t7geg2xnr4on7vwtf3wi", "after": "pay_vbqesgmpifukitjvfgihc762ve"}), 1),
    ("payment.timeout.json", "one payment without merchantid", delete("merchantid"), 1),
    ("payment.timeout.json", "one payment named by a pre-authorization number",
     set_data("payment_no", "pa_gnq3mratg6d4l4g2zxtjcal6hy"), 1),
    ("payment.timeout.json", "pre_auth_no instead of payment_no",
     set_top("data", {"pre_auth_no": "pa_gnq3mratg6d4l4g2zxtjcal6hy"}), 1),
    ("payment.timeout.json", "after that is not a payment number", set_data("after", "42"), 2),
    ("payment.timeout.json", "now not UTC", set_data("now", "2026-12-02T08:05:00+08:00")),
    ("payment.timeout.json", "now not a time", set_data("now", "tomorrow")),
    ("payment.timeout.json", "unknown data field", set_data("limit", 10)),
    ("payment.timeout.json", "wrong type", set_top("type", "preauth.expire")),
    # preauth.expire (same example layout)
    ("preauth.expire.json", "sweep with both pre_auth_no and after",
     set_top("data", {"pre_auth_no": "pa_gnq3mratg6d4l4g2zxtjcal6hy", "after": "pa_r5mjruuycfbxpihcl4vf4kcgsm"}), 1),
    ("preauth.expire.json", "one pre-authorization without merchantid", delete("merchantid"), 1),
    ("preauth.expire.json", "payment_no instead of pre_auth_no",
     set_top("data", {"payment_no": "pay_r3mty5t7geg2xnr4on7vwtf3wi"}), 1),
    ("preauth.expire.json", "after that is a payment number", set_data("after", "pay_vbqesgmpifukitjvfgihc762ve"), 2),
    ("preauth.expire.json", "unknown data field", set_data("batch", 10)),
    # settlement.run, archive.run, export.cleanup
    ("settlement.run.json", "date not YYYY-MM-DD", set_data("date", "20261201")),
    ("settlement.run.json", "date with a time", set_data("date", "2026-12-01T00:00:00Z")),
    ("settlement.run.json", "with merchantid", set_top("merchantid", "mch_01JD5ZK8Q2W3E4R5T6Y7U8V9W0")),
    ("settlement.run.json", "unknown data field", set_data("merchant_id", "mch_1")),
    ("archive.run.json", "tables empty", set_data("tables", [])),
    ("archive.run.json", "tables with a duplicate", set_data("tables", ["risk_events", "risk_events"])),
    ("archive.run.json", "tables as a string", set_data("tables", "risk_events")),
    ("archive.run.json", "with merchantid", set_top("merchantid", "mch_01JD5ZK8Q2W3E4R5T6Y7U8V9W0")),
    ("export.cleanup.json", "data not empty", set_data("force", True)),
    ("export.cleanup.json", "with merchantid", set_top("merchantid", "mch_01JD5ZK8Q2W3E4R5T6Y7U8V9W0")),
    ("system_command.json", "a merchant command type", set_top("type", "payment.create")),
    # pre-authorization resource and events
    ("pre_authorization.json", "status pending", lambda r: r.__setitem__("status", "pending")),
    ("pre_authorization.json", "status unknown", lambda r: r.__setitem__("status", "held")),
    ("pre_authorization.json", "pre_auth_no with the pay_ prefix",
     lambda r: r.__setitem__("pre_auth_no", "pay_gnq3mratg6d4l4g2zxtjcal6hy")),
    ("pre_authorization.json", "without released_amount", lambda r: r.__delitem__("released_amount")),
    ("pre_authorization.json", "without failure_message", lambda r: r.__delitem__("failure_message")),
    ("pre_authorization.json", "captured_amount -1", lambda r: r.__setitem__("captured_amount", -1)),
    ("pre_authorization.json", "capture_count -1", lambda r: r.__setitem__("capture_count", -1)),
    ("pre_authorization.json", "released_amount as a string", lambda r: r.__setitem__("released_amount", "0")),
    ("pre_authorization.json", "expires_at not UTC", lambda r: r.__setitem__("expires_at", "2026-12-02T18:00:00+08:00")),
    ("pre_authorization.json", "version -1", lambda r: r.__setitem__("version", -1)),
    ("pre_authorization.json", "currency lower case", lambda r: r.__setitem__("currency", "usd")),
    ("preauth.authorized.json", "authorized event whose pre-authorization is captured", set_data("status", "captured")),
    ("preauth.authorized.json", "authorized event with version 0", set_data("version", 0)),
    ("preauth.authorized.json", "authorized event without merchantid", delete("merchantid")),
    ("preauth.authorized.json", "authorized event with a capture", set_data("captured_amount", 100)),
    ("preauth.failed.json", "failed event without failure_code", set_data("failure_code", None)),
    ("preauth.failed.json", "failed event whose pre-authorization is authorized", set_data("status", "authorized")),
    ("preauth.captured.json", "captured event whose pre-authorization is authorized", set_data("status", "authorized")),
    ("preauth.captured.json", "captured event without a capture", set_data("capture_count", 0)),
    ("preauth.cancelled.json", "cancelled event whose pre-authorization expired", set_data("status", "expired")),
    ("preauth.cancelled.json", "cancelled event without time", delete("time")),
    ("preauth.expired.json", "expired event whose pre-authorization was cancelled", set_data("status", "cancelled")),
    ("preauth.expired.json", "expired event without released_amount", delete("data", "released_amount")),
    # payment events of this release
    ("payment.refunded.json", "refunded event whose payment is succeeded", set_payment("status", "succeeded")),
    ("payment.refunded.json", "refunded event with refunded_amount 0", set_payment("refunded_amount", 0)),
    ("payment.timed_out.json", "timed_out event with failure_code channel_declined",
     set_payment("failure_code", "channel_declined")),
    ("payment.timed_out.json", "timed_out event whose payment failed", set_payment("status", "failed")),
    ("payment.reversed.json", "reversed event whose payment succeeded", set_payment("status", "succeeded")),
    ("payment.reversed.json", "reversed event without merchantid", delete("merchantid")),
    # sweep.completed (examples: 0 all merchants, 1 one merchant)
    ("sweep.completed.json", "due -1", set_data("due", -1)),
    ("sweep.completed.json", "due 2.5", set_data("due", 2.5)),
    ("sweep.completed.json", "command_type of a merchant command", set_data("command_type", "payment.create")),
    ("sweep.completed.json", "without continued", delete("data", "continued")),
    ("sweep.completed.json", "continued as a string", set_data("continued", "no")),
    ("sweep.completed.json", "now not UTC", set_data("now", "2026-12-02T08:05:00+08:00")),
    ("sweep.completed.json", "merchantid on the envelope but merchant_id null",
     set_top("merchantid", "mch_01JD5ZK8Q2W3E4R5T6Y7U8V9W0")),
    ("sweep.completed.json", "merchant_id without merchantid on the envelope", delete("merchantid"), 1),
    ("sweep.completed.json", "without time", delete("time")),
    # command.rejected
    ("command.rejected.json", "code tier_forbiden (misspelt)", set_data("code", "tier_forbiden")),
    # money out: settlement.run (examples: 0 the clock's, 1 a continuation, 2 a sandbox run with now)
    ("settlement.run.json", "now not UTC", set_data("now", "2026-12-02T08:00:00+08:00")),
    ("settlement.run.json", "now not a time", set_data("now", "tomorrow")),
    ("settlement.run.json", "after that is not a merchant id", set_data("after", "mch.1"), 1),
    ("settlement.run.json", "continuation with merchantid", set_top("merchantid", "mch_01JD5ZK8Q2W3E4R5T6Y7U8V9W0"), 1),
    # settlement.merchant
    ("settlement.merchant.json", "missing merchantid", delete("merchantid")),
    ("settlement.merchant.json", "missing merchant_id", delete("data", "merchant_id")),
    ("settlement.merchant.json", "missing date", delete("data", "date")),
    ("settlement.merchant.json", "date not YYYY-MM-DD", set_data("date", "2026/12/01")),
    ("settlement.merchant.json", "merchant_id with a dot", set_data("merchant_id", "mch.1")),
    ("settlement.merchant.json", "now not UTC", set_data("now", "2026-12-02T08:00:00+08:00")),
    ("settlement.merchant.json", "unknown data field", set_data("currency", "USD")),
    ("settlement.merchant.json", "wrong type", set_top("type", "settlement.run")),
    # archive.run (examples: 0 the clock's, 1 two tables, 2 a continuation)
    ("archive.run.json", "an unknown table", set_data("tables", ["payments"])),
    ("archive.run.json", "the table name unique", set_data("tables", ["unique"])),
    ("archive.run.json", "an archive table's name", set_data("tables", ["risk_events_archive"])),
    ("archive.run.json", "run empty", set_data("run", ""), 2),
    ("archive.run.json", "run 129 characters", set_data("run", "r" * 129), 2),
    ("archive.run.json", "run as a number", set_data("run", 7), 2),
    ("archive.run.json", "continuation with merchantid", set_top("merchantid", "mch_01JD5ZK8Q2W3E4R5T6Y7U8V9W0"), 2),
    ("archive.run.json", "unknown data field", set_data("batch", 10)),
    # export.run (examples: 0 the ingress's, 1 a continuation)
    ("export.run.json", "missing merchantid", delete("merchantid")),
    ("export.run.json", "missing task_id", delete("data", "task_id")),
    ("export.run.json", "task_id without the exp_ prefix", set_data("task_id", "m3qz7hx2kvt5bwr4yn6dpc2ela")),
    ("export.run.json", "task_id of a settlement", set_data("task_id", "stl_vd4mx7kq2pz5gq6wnhrj3tyc4e")),
    ("export.run.json", "step -1", set_data("step", -1), 1),
    ("export.run.json", "step 1.5", set_data("step", 1.5), 1),
    ("export.run.json", "step as a string", set_data("step", "1"), 1),
    ("export.run.json", "unknown data field", set_data("format", "csv")),
    ("export.run.json", "wrong type", set_top("type", "export.cleanup")),
    # export.cleanup (examples: 0 the clock's, 1 a sandbox cleanup with now)
    ("export.cleanup.json", "now not UTC", set_data("now", "2026-12-03T18:00:00+08:00"), 1),
    ("export.cleanup.json", "now with another member", set_data("force", True), 1),
    # order resource
    ("order.json", "status unknown", lambda r: r.__setitem__("status", "shipped")),
    ("order.json", "version 0", lambda r: r.__setitem__("version", 0)),
    ("order.json", "amount 0", lambda r: r.__setitem__("amount", 0)),
    ("order.json", "payments naming a pre-authorization", lambda r: r.__setitem__("payments", ["pa_gnq3mratg6d4l4g2zxtjcal6hy"])),
    ("order.json", "payments with a duplicate",
     lambda r: r.__setitem__("payments", ["pay_qpw7feitnfna5cny7ee3g577da", "pay_qpw7feitnfna5cny7ee3g577da"])),
    ("order.json", "without payments", lambda r: r.__delitem__("payments")),
    ("order.json", "order_no with a newline", lambda r: r.__setitem__("order_no", "order\n1001")),
    # settlement resource and line
    ("settlement.json", "version 2", lambda r: r.__setitem__("version", 2)),
    ("settlement.json", "settlement_id without stl_", lambda r: r.__setitem__("settlement_id", "vd4mx7kq2pz5gq6wnhrj3tyc4e")),
    ("settlement.json", "settlement_id with a dot", lambda r: r.__setitem__("settlement_id", "stl_a.b")),
    ("settlement.json", "date with a time", lambda r: r.__setitem__("date", "2026-12-01T00:00:00Z")),
    ("settlement.json", "payout_date missing", lambda r: r.__delitem__("payout_date")),
    ("settlement.json", "gross 1.5", lambda r: r.__setitem__("gross", 1.5)),
    ("settlement.json", "fee_bps -1", lambda r: r.__setitem__("fee_bps", -1)),
    ("settlement.json", "payment_count -1", lambda r: r.__setitem__("payment_count", -1)),
    ("settlement_line.json", "refund line without refund_no", lambda r: r.__setitem__("refund_no", None), 1),
    ("settlement_line.json", "payment line with a refund_no",
     lambda r: r.__setitem__("refund_no", "re_k5xq3d7mfzbw2lqhv4o6ytr2ca")),
    ("settlement_line.json", "refund_no that is a payment number",
     lambda r: r.__setitem__("refund_no", "pay_qpw7feitnfna5cny7ee3g577da"), 1),
    ("settlement_line.json", "kind chargeback", lambda r: r.__setitem__("kind", "chargeback")),
    ("settlement_line.json", "amount 0", lambda r: r.__setitem__("amount", 0)),
    ("settlement_line.json", "negative refund amount", lambda r: r.__setitem__("amount", -1500), 1),
    # export task resource (examples: 0 completed, 1 pending)
    ("export_task.json", "completed with sha256 null", lambda r: r.__setitem__("sha256", None)),
    ("export_task.json", "completed with row_count null", lambda r: r.__setitem__("row_count", None)),
    ("export_task.json", "completed with expires_at null", lambda r: r.__setitem__("expires_at", None)),
    ("export_task.json", "completed at progress 99", lambda r: r.__setitem__("progress", 99)),
    ("export_task.json", "sha256 in upper case", lambda r: r.__setitem__("sha256", "9F2C" + r["sha256"][4:])),
    ("export_task.json", "sha256 of 63 digits", lambda r: r.__setitem__("sha256", r["sha256"][1:])),
    ("export_task.json", "progress 101", lambda r: r.__setitem__("progress", 101)),
    ("export_task.json", "format xlsx", lambda r: r.__setitem__("format", "xlsx")),
    ("export_task.json", "status unknown", lambda r: r.__setitem__("status", "done")),
    ("export_task.json", "failed without failure_message", lambda r: r.__setitem__("status", "failed"), 1),
    ("export_task.json", "expires_at not UTC", lambda r: r.__setitem__("expires_at", "2026-12-03T17:00:41+08:00")),
    ("export_task.json", "without failure_message", lambda r: r.__delitem__("failure_message")),
    ("export_task.json", "version 0", lambda r: r.__setitem__("version", 0), 1),
    # money-out events
    ("order.updated.json", "order with version 0", set_data("version", 0)),
    ("order.updated.json", "wrong type", set_top("type", "order.created")),
    ("settlement.created.json", "settlement with version 2", set_data("version", 2)),
    ("settlement.created.json", "without time", delete("time")),
    ("export.progress.json", "progress event whose task completed", set_data("status", "completed")),
    ("export.progress.json", "progress event whose task is pending", set_data("status", "pending")),
    ("export.completed.json", "completed event whose task is processing", set_data("status", "processing")),
    ("export.completed.json", "completed event without sha256", set_data("sha256", None)),
    ("export.completed.json", "completed event without size", set_data("size", None)),
    ("export.failed.json", "failed event without failure_message", set_data("failure_message", None)),
    ("export.failed.json", "failed event with an empty failure_message", set_data("failure_message", "")),
    ("export.failed.json", "failed event whose task completed", set_data("status", "completed")),
    ("settlement.merchant.completed.json", "without settlement_ids", delete("data", "settlement_ids")),
    ("settlement.merchant.completed.json", "settlement_ids naming an export", set_data("settlement_ids", ["exp_m3qz7hx2kvt5bwr4yn6dpc2ela"])),
    ("settlement.merchant.completed.json", "settlement_ids with a duplicate",
     set_data("settlement_ids", ["stl_vd4mx7kq2pz5gq6wnhrj3tyc4e", "stl_vd4mx7kq2pz5gq6wnhrj3tyc4e"])),
    ("settlement.merchant.completed.json", "date with a time", set_data("date", "2026-12-01T00:00:00Z")),
    ("settlement.run.completed.json", "merchants -1", set_data("merchants", -1)),
    ("settlement.run.completed.json", "merchants as a string", set_data("merchants", "214")),
    ("settlement.run.completed.json", "without continued", delete("data", "continued")),
    ("settlement.run.completed.json", "without date", delete("data", "date")),
    ("settlement.run.completed.json", "now not UTC", set_data("now", "2026-12-02T08:00:01+08:00")),
    ("archive.progress.json", "progress that says finished", set_data("finished", True)),
    ("archive.progress.json", "moved for an unknown table", set_data("moved", {"payments": 10})),
    ("archive.progress.json", "moved -1", set_data("moved", {"audit_logs": -1})),
    ("archive.progress.json", "without run_id", delete("data", "run_id")),
    ("archive.completed.json", "completed that is not finished", set_data("finished", False)),
    ("archive.completed.json", "run_id empty", set_data("run_id", "")),
    ("archive.completed.json", "moved as a number", set_data("moved", 42)),
    ("export.cleanup.completed.json", "expired -1", set_data("expired", -1)),
    ("export.cleanup.completed.json", "without now", delete("data", "now")),
]

GOOD = [
    ("payment.create.json", "order_no 64 characters", set_data("order_no", "x" * 64)),
    ("payment.create.json", "order_no with spaces and non-ASCII", set_data("order_no", " Bestellung Nr. 42 / 注文 ")),
    ("payment.create.json", "amount 1", set_data("amount", 1)),
    ("payment.create.json", "amount Int64.max", set_data("amount", INT64_MAX)),
    ("payment.create.json", "currency USDT", set_data("currency", "USDT")),
    ("payment.create.json", "no optional envelope members",
     lambda e: [e.pop(k) for k in ("time", "datacontenttype", "idempotencykey", "traceparent")]),
    ("payment.create.json", "unknown scalar extension attribute", set_top("tracestate", "vendor=1")),
    ("payment.create.json", "time with an offset", set_top("time", "2026-11-25T09:02:03+08:00")),
    ("payment.create.json", "metadata 50 keys", set_data("metadata", {f"k{i}": "v" for i in range(50)})),
    ("payment.succeeded.json", "unknown payment member (open resource)", set_payment("risk_score", 12)),
    ("payment.succeeded.json", "the payment of a capture (pre_auth_no set)",
     set_payment("pre_auth_no", "pa_gnq3mratg6d4l4g2zxtjcal6hy")),
    ("payment.json", "version 0 (the ingress's 202 processing answer)",
     lambda r: r.update(status="processing", version=0, channel=None, routing=None, channel_fee=0)),
    ("preauth.create.json", "expires_in_seconds 2592000 (30 days)", set_data("expires_in_seconds", 2592000)),
    ("preauth.create.json", "expires_in_seconds 60", set_data("expires_in_seconds", 60)),
    ("preauth.create.json", "every payment.create member", set_top("data", copy.deepcopy(
        schemas["payment.create.json"]["examples"][1]["data"]))),
    ("preauth.capture.json", "final false", set_data("final", False)),
    ("preauth.capture.json", "amount Int64.max", set_data("amount", INT64_MAX)),
    ("preauth.cancel.json", "reason 500 characters", set_data("reason", "r" * 500)),
    ("preauth.cancel.json", "reason with non-ASCII", set_data("reason", "Gast reist früher ab / 提前退房")),
    ("payment.refund.json", "reason 500 characters", set_data("reason", "r" * 500)),
    ("payment.refund.json", "amount 1", set_data("amount", 1)),
    ("payment.complete.json", "result failed", set_data("result", "failed")),
    ("payment.complete.json", "channel_ref 128 characters", set_data("channel_ref", "c" * 128)),
    ("payment.timeout.json", "a sweep confined to one merchant",
     set_top("merchantid", "mch_01JD5ZK8Q2W3E4R5T6Y7U8V9W0")),
    ("payment.timeout.json", "a sweep with now (sandbox)", set_data("now", "2026-12-02T00:40:00.000Z")),
    ("payment.timeout.json", "one payment with now", set_data("now", "2026-12-02T00:40:00Z"), 1),
    ("payment.timeout.json", "a continuation with now", set_data("now", "2026-12-02T00:40:00Z"), 2),
    ("preauth.expire.json", "a sweep confined to one merchant",
     set_top("merchantid", "mch_01JD5ZK8Q2W3E4R5T6Y7U8V9W0")),
    ("preauth.expire.json", "one pre-authorization with now", set_data("now", "2026-12-09T00:00:00Z"), 1),
    ("settlement.run.json", "no date (yesterday)", set_top("data", {})),
    ("archive.run.json", "one table", set_data("tables", ["audit_logs"])),
    ("pre_authorization.json", "partially captured",
     lambda r: r.update(status="partially_captured", captured_amount=20000, capture_count=1, version=2)),
    ("pre_authorization.json", "unknown member (open resource)", lambda r: r.__setitem__("captures", [])),
    ("preauth.captured.json", "a partial capture",
     lambda e: e["data"].update(status="partially_captured", released_amount=0)),
    ("payment.refunded.json", "fully refunded", lambda e: e["data"].update(status="refunded", refunded_amount=5000)),
    ("payment.reversed.json", "a late success after a failure",
     lambda e: e["data"].update(status="failed", failure_code="channel_declined")),
    ("sweep.completed.json", "due 0", set_data("due", 0)),
    ("sweep.completed.json", "an expiry sweep that continued",
     lambda e: e["data"].update(command_type="preauth.expire", due=1000, continued=True)),
    ("command.rejected.json", "code not_found", set_data("code", "not_found")),
    ("command.rejected.json", "code invalid_state", set_data("code", "invalid_state")),
    ("command.rejected.json", "code channel_declined", set_data("code", "channel_declined")),
    ("command.rejected.json", "code channel_error", set_data("code", "channel_error")),
    # money out
    ("settlement.run.json", "a run with now (sandbox)", set_data("now", "2026-12-02T00:00:00Z")),
    ("settlement.run.json", "a continuation with now", set_data("now", "2026-12-02T00:00:00Z"), 1),
    ("settlement.run.json", "now alone (yesterday at now)", set_top("data", {"now": "2026-11-26T00:05:00Z"}), 2),
    ("settlement.merchant.json", "with now (sandbox)", set_data("now", "2026-12-02T00:00:00Z")),
    ("archive.run.json", "all four tables",
     set_data("tables", ["payment_callbacks", "notifications", "audit_logs", "risk_events"])),
    ("archive.run.json", "a continuation naming its tables", set_data("tables", ["notifications"]), 2),
    ("archive.run.json", "run 128 characters", set_data("run", "r" * 128), 2),
    ("export.run.json", "step 0", set_data("step", 0), 1),
    ("export.cleanup.json", "now with fractional seconds", set_data("now", "2026-12-03T10:00:00.250Z"), 1),
    ("order.json", "paid, two payments",
     lambda r: r.update(status="paid", payments=["pay_r3mty5t7geg2xnr4on7vwtf3wi", "pay_qpw7feitnfna5cny7ee3g577da"])),
    ("order.json", "unknown member (open resource)", lambda r: r.__setitem__("paid_amount", 5000)),
    ("settlement.json", "refunds above payments (negative gross and net)",
     lambda r: r.update(gross=-2000, fee=0, net=-2000, payment_count=0, refund_count=1)),
    ("settlement.json", "unknown member (open resource)", lambda r: r.__setitem__("payout_status", "scheduled")),
    ("settlement_line.json", "unknown member (open resource)", lambda r: r.__setitem__("fee", 30)),
    ("export_task.json", "expired, the file's facts kept", lambda r: r.update(status="expired", version=6)),
    ("export_task.json", "processing", lambda r: r.update(status="processing", rows_total=4000, rows_done=1000,
                                                          progress=25, version=2), 1),
    ("export_task.json", "failed while pending",
     lambda r: r.update(status="failed", failure_message="the range holds no data", version=2), 1),
    ("settlement.merchant.completed.json", "two currencies",
     set_data("settlement_ids", ["stl_vd4mx7kq2pz5gq6wnhrj3tyc4e", "stl_b7wq2n5xkz3r4mdt6yhc2pje5a"])),
    ("settlement.run.completed.json", "a full batch that continued", lambda e: e["data"].update(merchants=1000, continued=True)),
    ("archive.completed.json", "nothing to move", set_data("moved", {})),
    ("archive.progress.json", "one table only", set_data("moved", {"notifications": 1000})),
    ("export.cleanup.completed.json", "nothing expired", set_data("expired", 0)),
]

# Needs the optional rfc3339-validator package, which asserts format date-time.
if not FORMATS.conforms("2026-13-45T01:02:03Z", "date-time"):
    BAD.append(("payment.create.json", "time impossible date", set_top("time", "2026-13-45T01:02:03Z")))
else:
    print("note: rfc3339-validator not installed; date-time formats are not asserted")

for name, what, mutate, *example in BAD:
    instance = variant(name, mutate, *example)
    errs = errors_of(validators[name], instance)
    check(bool(errs), f"{name} rejects {what}", "accepted")

for name, what, mutate, *example in GOOD:
    instance = variant(name, mutate, *example)
    errs = errors_of(validators[name], instance)
    check(not errs, f"{name} accepts {what}", "; ".join(errs))

# Merchant events name their merchant (m.<merchant_id>.<type>); system events (sys.<type>) never do.
check(not (MERCHANT_EVENTS & SYSTEM_EVENTS), "no event is both a merchant and a system event")
for name in sorted(MERCHANT_EVENTS | SYSTEM_EVENTS):
    check(name in MESSAGES, f"{name} is a message schema")
for name in sorted(MERCHANT_EVENTS):
    for i, example in enumerate(schemas.get(name, {}).get("examples", [])):
        check("merchantid" in example, f"{name} examples[{i}] carries merchantid")
        instance = {k: v for k, v in example.items() if k != "merchantid"}
        check(bool(errors_of(validators[name], instance)), f"{name} rejects examples[{i}] without merchantid", "accepted")
for name in sorted(SYSTEM_EVENTS):
    for i, example in enumerate(schemas.get(name, {}).get("examples", [])):
        check("merchantid" not in example, f"{name} examples[{i}] carries no merchantid")
        instance = dict(example, merchantid="mch_01JD5ZK8Q2W3E4R5T6Y7U8V9W0")
        check(bool(errors_of(validators[name], instance)), f"{name} rejects examples[{i}] with merchantid", "accepted")

# --------------------------------------------------------------------------
# 5. asyncapi.yaml
try:
    doc = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    check(isinstance(doc, dict), "asyncapi.yaml parses")
except (OSError, yaml.YAMLError) as exc:
    check(False, "asyncapi.yaml parses", str(exc))
    doc = {}

if doc:
    check(doc.get("asyncapi") == "3.0.0", "asyncapi.yaml is AsyncAPI 3.0.0", doc.get("asyncapi"))
    for key in ("info", "servers", "channels", "operations", "components"):
        check(key in doc, f"asyncapi.yaml has {key}")

    used_files = set()
    for where, ref in walk_refs(doc):
        target, _, frag = ref.partition("#")
        if target:
            path = (ASYNCAPI.parent / target).resolve()
            ok = path.is_file()
            check(ok, f"asyncapi.yaml{where} $ref {ref} points to an existing file")
            if ok:
                used_files.add(path)
                if frag:
                    try:
                        pointer(json.loads(path.read_text(encoding="utf-8")), frag)
                    except (KeyError, IndexError, ValueError) as exc:
                        check(False, f"asyncapi.yaml{where} $ref {ref} fragment", repr(exc))
        else:
            try:
                pointer(doc, frag)
                check(True, f"asyncapi.yaml{where} $ref {ref}")
            except (KeyError, IndexError, ValueError) as exc:
                check(False, f"asyncapi.yaml{where} $ref {ref} resolves", repr(exc))

    for name in sorted(MESSAGES):
        check((SCHEMAS / name).resolve() in used_files, f"asyncapi.yaml uses schemas/{name}")

    # AsyncAPI 3: an operation's messages must be messages of its channel.
    for op_name, op in doc.get("operations", {}).items():
        chan = op.get("channel", {}).get("$ref", "")
        for m in op.get("messages", []):
            check(m.get("$ref", "").startswith(chan + "/messages/"),
                  f"operation {op_name} message {m.get('$ref')} belongs to {chan}")
        reply = op.get("reply") or {}
        if reply:
            rchan = reply.get("channel", {}).get("$ref", "")
            for m in reply.get("messages", []):
                check(m.get("$ref", "").startswith(rchan + "/messages/"),
                      f"operation {op_name} reply message {m.get('$ref')} belongs to {rchan}")

    # A message's name, its AMQP messageType and its schema's type are the same.
    for msg_name, msg in doc.get("components", {}).get("messages", {}).items():
        ref = (((msg.get("payload") or {}).get("schema")) or {}).get("$ref", "")
        file = ref.rsplit("/", 1)[-1]
        mtype = ((msg.get("bindings") or {}).get("amqp") or {}).get("messageType")
        check(msg.get("name") == mtype == type_const(schemas.get(file, {})),
              f"message {msg_name}: name, messageType and schema type agree",
              f"{msg.get('name')} / {mtype} / {type_const(schemas.get(file, {}))}")

    # Message examples validate against the schema their payload references.
    for msg_name, msg in doc.get("components", {}).get("messages", {}).items():
        ref = (((msg.get("payload") or {}).get("schema")) or {}).get("$ref", "")
        check(ref.startswith("./schemas/"), f"message {msg_name} payload references schemas/", ref)
        file = ref.rsplit("/", 1)[-1]
        for i, ex in enumerate(msg.get("examples", [])):
            if file in validators:
                errs = errors_of(validators[file], ex.get("payload"))
                check(not errs, f"message {msg_name} examples[{i}] is valid", "; ".join(errs))

# --------------------------------------------------------------------------
# 6. asyncapi.yaml says the same as the RabbitMQ definitions (when present)
DEFINITIONS = HERE / "definitions.json"
if doc and DEFINITIONS.is_file():
    try:
        defs = json.loads(DEFINITIONS.read_text(encoding="utf-8"))
    except ValueError as exc:
        check(False, "definitions.json parses", str(exc))
        defs = {}
    exchanges = {e["name"]: e for e in defs.get("exchanges", [])}
    queues = {q["name"]: q for q in defs.get("queues", [])}
    bindings = {(b["source"], b["destination"], b.get("routing_key", ""))
                for b in defs.get("bindings", [])}
    documented_queues = set()
    for chan_name, chan in doc.get("channels", {}).items():
        amqp = (chan.get("bindings") or {}).get("amqp") or {}
        if amqp.get("is") == "queue":
            q = amqp.get("queue", {})
            documented_queues.add(q.get("name"))
            real = queues.get(q.get("name"))
            check(real is not None, f"channel {chan_name}: queue {q.get('name')} is in definitions.json")
            if real is None:
                continue
            check(real.get("durable") == q.get("durable"), f"channel {chan_name}: durable matches definitions.json")
            check(real.get("auto_delete") == q.get("autoDelete"), f"channel {chan_name}: autoDelete matches definitions.json")
            args = chan.get("x-payfleet-queue-arguments")
            if args is not None:
                check(args == real.get("arguments"), f"channel {chan_name}: queue arguments match definitions.json",
                      f"{args} != {real.get('arguments')}")
            for b in chan.get("x-payfleet-bindings", []):
                for key in b.get("routingKeys", []):
                    check((b["exchange"], q.get("name"), key) in bindings,
                          f"channel {chan_name}: binding {b['exchange']} -[{key}]-> {q.get('name')} is in definitions.json")
                if "exchangeType" in b:
                    check(exchanges.get(b["exchange"], {}).get("type") == b["exchangeType"],
                          f"channel {chan_name}: {b['exchange']} is a {b['exchangeType']} exchange in definitions.json")
        elif amqp.get("is") == "routingKey":
            x = amqp.get("exchange", {})
            real = exchanges.get(x.get("name"))
            check(real is not None, f"channel {chan_name}: exchange {x.get('name')} is in definitions.json")
            if real is not None:
                check(real.get("type") == x.get("type"), f"channel {chan_name}: exchange type matches definitions.json")
                check(real.get("durable") == x.get("durable"), f"channel {chan_name}: exchange durable matches definitions.json")
        for delay in chan.get("x-payfleet-delay-queues", []):
            check(delay in queues, f"channel {chan_name}: delay queue {delay} is in definitions.json")
            check(any(s == amqp.get("exchange", {}).get("name") and d == delay for s, d, _ in bindings),
                  f"channel {chan_name}: delay queue {delay} is bound from the retry exchange")
    # every command work queue of the definitions is documented
    for s, d, _ in sorted(bindings):
        if s == "payfleet.commands":
            check(d in documented_queues, f"work queue {d} of definitions.json is documented in asyncapi.yaml")
    # every command type bound to a work queue has a message schema and a command channel
    messages_by_key = doc.get("components", {}).get("messages", {})
    command_channels = {
        chan.get("address") for chan in doc.get("channels", {}).values()
        if (((chan.get("bindings") or {}).get("amqp") or {}).get("exchange") or {}).get("name") == "payfleet.commands"
    }
    for s, d, key in sorted(bindings):
        if s != "payfleet.commands":
            continue
        check(f"{key}.json" in MESSAGES, f"command {key} (bound to {d}) has a message schema")
        check(key in command_channels, f"command {key} has a channel on payfleet.commands in asyncapi.yaml")
    # the commands a work queue channel lists are bound to that queue
    for chan_name, chan in doc.get("channels", {}).items():
        amqp = (chan.get("bindings") or {}).get("amqp") or {}
        qname = (amqp.get("queue") or {}).get("name")
        if amqp.get("is") != "queue" or not any(b.get("exchange") == "payfleet.commands"
                                                for b in chan.get("x-payfleet-bindings", [])):
            continue
        for ref in (chan.get("messages") or {}).values():
            msg = messages_by_key.get(ref.get("$ref", "").rsplit("/", 1)[-1], {})
            check(("payfleet.commands", qname, msg.get("name")) in bindings,
                  f"channel {chan_name}: message {msg.get('name')} is bound to {qname} in definitions.json")
elif doc:
    print("note: definitions.json not found; topology cross-check skipped")

print(f"schemas: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
