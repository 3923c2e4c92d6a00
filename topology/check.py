#!/usr/bin/env python3
"""Check PayFleet's message contract files in topology/.

* every schemas/*.json is a valid JSON Schema draft 2020-12 document with the
  expected $id (https://payfleet.dev/schemas/<file>), a title and a description;
* every $ref in them resolves locally (a referencing.Registry built from the
  files themselves; nothing is fetched);
* every example embedded in a schema's `examples` is valid, formats included
  (every schema but common.json must have at least one);
* known-bad instances are rejected and known-good edge cases accepted;
* asyncapi.yaml parses, is AsyncAPI 3.0.0, every $ref in it points to an
  existing file (and JSON pointer), operations only use their channel's
  messages, every message schema in schemas/ is used, and its message
  examples validate against the referenced schemas;
* when definitions.json (the RabbitMQ definitions) is beside it, the
  exchanges, queues, queue arguments and bindings asyncapi.yaml documents are
  the ones it declares, and every command work queue is documented.

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
    "payment.create.json",
    "payment.succeeded.json",
    "payment.pending.json",
    "payment.failed.json",
    "command.rejected.json",
}

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
for name in sorted(MESSAGES | {"cloudevent.json", "payment.json", "merchant.json", "problem.json"}):
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
]

# Needs the optional rfc3339-validator package, which asserts format date-time.
if not FORMATS.conforms("2026-13-45T01:02:03Z", "date-time"):
    BAD.append(("payment.create.json", "time impossible date", set_top("time", "2026-13-45T01:02:03Z")))
else:
    print("note: rfc3339-validator not installed; date-time formats are not asserted")

for name, what, mutate in BAD:
    instance = variant(name, mutate)
    errs = errors_of(validators[name], instance)
    check(bool(errs), f"{name} rejects {what}", "accepted")

for name, what, mutate in GOOD:
    instance = variant(name, mutate)
    errs = errors_of(validators[name], instance)
    check(not errs, f"{name} accepts {what}", "; ".join(errs))

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
elif doc:
    print("note: definitions.json not found; topology cross-check skipped")

print(f"schemas: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
