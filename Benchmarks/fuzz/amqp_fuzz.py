#!/usr/bin/env python3
"""AMQP fuzzer (issue 9 §3): publishes malformed commands to every command type, with valid
traffic mixed in, against a running PayFleet stack; then checks that no worker crashed, every
malformed message was parked with its reason, and every valid command was done exactly once.

Usage: amqp_fuzz.py --amqp-url URL --database-url URL --merchant MCH --count N [--seed S] [--valid-every K]
Prints one table; exits 1 on any failure.
"""
import argparse
import json
import os
import random
import sys
import time
import uuid

import pika
import psycopg

COMMAND_TYPES = ["payment.create", "preauth.create", "payment.complete", "preauth.capture", "preauth.cancel",
                 "payment.refund", "payment.timeout", "preauth.expire", "settlement.run", "settlement.merchant",
                 "archive.run", "retention.prune", "export.run", "export.cleanup"]


def envelope(rng, merchant, ctype, data, **extra):
    body = {"specversion": "1.0", "id": str(uuid.UUID(int=rng.getrandbits(128))), "type": ctype,
            "source": "/fuzz", "merchantid": merchant, "data": data}
    body.update(extra)
    return body


def malformed(rng, merchant):
    """One hostile body and a label for its kind."""
    ctype = rng.choice(COMMAND_TYPES)
    kind = rng.choice(["random_bytes", "truncated_json", "wrong_types", "huge_numbers", "deep_nesting",
                       "control_chars", "unknown_type", "not_an_object", "missing_fields", "bad_envelope"])
    valid_payment = {"order_no": "o-1", "amount": 1000, "currency": "USD", "country": "US", "pay_method": "card"}
    if kind == "random_bytes":
        body = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400)))
        if body[:1] in (b"{", b"["):
            body = b"\x00" + body
    elif kind == "truncated_json":
        full = json.dumps(envelope(rng, merchant, ctype, valid_payment)).encode()
        body = full[: rng.randint(1, len(full) - 2)]
    elif kind == "wrong_types":
        data = {"order_no": rng.choice([1, [], {}, None, True]), "amount": rng.choice(["1000", 10.5, [], {}, None, -5, 0]),
                "currency": rng.choice([840, None, "XXX", ""]), "country": rng.choice([1, "USA", ""]),
                "pay_method": rng.choice([0, "cash", None]), "pre_auth_no": rng.choice([1, [], None]),
                "payment_no": rng.choice([2, {}, None]), "date": rng.choice([1, "yesterday", "2026-13-45"]),
                "task_id": rng.choice([3, [], None]), "tables": rng.choice(["all", 5, [1, 2]])}
        body = json.dumps(envelope(rng, merchant, ctype, data)).encode()
    elif kind == "huge_numbers":
        number = rng.choice(["1" + "0" * 400, "9223372036854775808", "-9223372036854775809", "1e308", "1e999", "-0.0000001"])
        text = json.dumps(envelope(rng, merchant, ctype, dict(valid_payment, amount=0)))
        body = text.replace('"amount": 0', '"amount": ' + number).encode()
    elif kind == "deep_nesting":
        depth = rng.choice([40, 1000, 100_000])
        body = json.dumps(envelope(rng, merchant, ctype, {})).replace('"data": {}', '"data": ' + "[" * depth + "]" * depth).encode()
    elif kind == "control_chars":
        nasty = "".join(chr(rng.choice([0, 1, 7, 8, 10, 13, 27, 0x7f, 0x85, 0x2028, 0xfeff])) for _ in range(rng.randint(0, 60)))
        nasty += chr(rng.choice([0, 1, 7, 8, 10, 13, 27]))  # at least one C0 control: never a valid id
        data = dict(valid_payment, order_no=nasty, subject=nasty + '\n{"level":"error"}')
        body = json.dumps(envelope(rng, merchant + nasty, ctype, data, id="fz-" + nasty)).encode()
    elif kind == "unknown_type":
        body = json.dumps(envelope(rng, merchant, "payment.teleport", valid_payment)).encode()
    elif kind == "not_an_object":
        body = json.dumps(rng.choice([[], "payment", 42, None, [envelope(rng, merchant, ctype, {})]])).encode()
    elif kind == "missing_fields":
        env = envelope(rng, merchant, ctype, {})
        for field in rng.sample(["specversion", "id", "type", "source", "data"], rng.randint(1, 3)):
            env.pop(field, None)
        body = json.dumps(env).encode()
    else:  # bad_envelope: one attribute made invalid (every value here is refused for its field)
        env = envelope(rng, merchant, ctype, valid_payment)
        field, values = rng.choice([("specversion", ["2.0", "", 1]), ("merchantid", ["a.b", "x" * 300, 7]),
                                    ("idempotencykey", ["", "x" * 300, "\u0000"]), ("id", ["", "x" * 300, 7])])
        env[field] = rng.choice(values)
        body = json.dumps(env).encode()
    # An unknown type on a known routing key is fine for every kind: the routing key is what routes.
    return ctype, kind, body


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--merchant", required=True, help="an existing merchant for the valid payments")
    parser.add_argument("--count", type=int, default=100_000, help="malformed messages")
    parser.add_argument("--valid-every", type=int, default=50, help="one valid payment.create per this many malformed")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--drain-timeout", type=int, default=900)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    channel = connection.channel()
    # No publisher confirms: a blocking client waits for each one (about 100 a second). A message
    # the broker lost would show up as missing below: the check only errs on the side of failing.
    user = pika.URLParameters(args.amqp_url).credentials.username
    parked_before = channel.queue_declare("payfleet.parked", passive=True).method.message_count

    kinds, valid_ids, started = {}, [], time.time()
    for index in range(args.count):
        ctype, kind, body = malformed(rng, args.merchant)
        kinds[kind] = kinds.get(kind, 0) + 1
        channel.basic_publish("payfleet.commands", ctype, body,
                              pika.BasicProperties(delivery_mode=2, content_type="application/cloudevents+json",
                                                   message_id="fuzz-%d" % index, type=ctype, user_id=user), mandatory=True)
        if index % args.valid_every == 0:
            env = envelope(rng, args.merchant, "payment.create",
                           {"order_no": "fuzz-%d-%d" % (args.seed, index), "amount": 1000 + rng.randint(0, 40) * 100,
                            "currency": "USD", "country": "US", "pay_method": "card"})
            valid_ids.append(env["id"])
            channel.basic_publish("payfleet.commands", "payment.create", json.dumps(env).encode(),
                                  pika.BasicProperties(delivery_mode=2, content_type="application/cloudevents+json",
                                                       message_id=env["id"], type="payment.create", user_id=user), mandatory=True)
        if index and index % 10_000 == 0:
            print("published %d malformed, %d valid (%.0f/s)" % (index, len(valid_ids), index / (time.time() - started)),
                  file=sys.stderr, flush=True)
    published = time.time() - started

    # Drain: every malformed message parked, every valid command in the inbox with its outcome.
    deadline = time.time() + args.drain_timeout
    parked = done = 0
    with psycopg.connect(args.database_url, autocommit=True) as db:
        while time.time() < deadline:
            parked = channel.queue_declare("payfleet.parked", passive=True).method.message_count - parked_before
            done = db.execute("SELECT count(*) FROM inbox WHERE merchant_id = %s AND command_id = ANY(%s) AND outcome_type IS NOT NULL",
                              (args.merchant, valid_ids)).fetchone()[0]
            if parked >= args.count and done >= len(valid_ids):
                break
            time.sleep(2)
        drained = time.time() - started - published
        payments = db.execute("SELECT count(*), count(DISTINCT command_id) FROM payments WHERE merchant_id = %s AND command_id = ANY(%s)",
                              (args.merchant, valid_ids)).fetchone()

    # Every parked message carries its reason.
    without_reason, reasons, sampled = 0, {}, 0
    for method, properties, body in channel.consume("payfleet.parked", inactivity_timeout=2, auto_ack=False):
        if method is None:
            break
        headers = properties.headers or {}
        reason = headers.get("x-parked-reason")
        if not reason:
            without_reason += 1
        else:
            code = reason.decode() if isinstance(reason, bytes) else str(reason)
            code = code.split(":")[0]
            reasons[code] = reasons.get(code, 0) + 1
        sampled += 1
        channel.basic_nack(method.delivery_tag, requeue=True) if False else channel.basic_ack(method.delivery_tag)
        if sampled >= parked + 10:
            break
    channel.cancel()
    connection.close()

    failures = []
    if parked != args.count:
        failures.append("parked %d of %d malformed messages" % (parked, args.count))
    if without_reason:
        failures.append("%d parked messages without x-parked-reason" % without_reason)
    if done != len(valid_ids):
        failures.append("%d of %d valid commands have an outcome" % (done, len(valid_ids)))
    if payments[0] != payments[1] or payments[1] != len(valid_ids):
        failures.append("payments for valid commands: %d rows, %d commands, %d sent" % (payments[0], payments[1], len(valid_ids)))

    print()
    print("AMQP fuzzing (seed %d)" % args.seed)
    print("| %-44s | %12s |" % ("what", "count"))
    print("|%s|%s|" % ("-" * 46, "-" * 14))
    for kind in sorted(kinds):
        print("| %-44s | %12s |" % ("malformed: " + kind, format(kinds[kind], ",")))
    print("| %-44s | %12s |" % ("malformed, total", format(args.count, ",")))
    print("| %-44s | %12s |" % ("valid payment.create mixed in", format(len(valid_ids), ",")))
    print("| %-44s | %12s |" % ("parked with a reason", format(parked - without_reason, ",")))
    for code in sorted(reasons):
        print("| %-44s | %12s |" % ("  reason " + code, format(reasons[code], ",")))
    print("| %-44s | %12s |" % ("valid commands done (inbox outcome)", format(done, ",")))
    print("| %-44s | %12s |" % ("payments for them (distinct commands)", "%d (%d)" % payments))
    print("| %-44s | %12.1f |" % ("publish seconds", published))
    print("| %-44s | %12.1f |" % ("drain seconds after the last publish", drained))
    print("| %-44s | %12s |" % ("failures", len(failures)))
    for failure in failures:
        print("FAIL: " + failure)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
