#!/usr/bin/env python3
"""Check topology/openapi.yaml and generate Sources/Ingress/OpenAPIDocument.swift from it.

    python3 topology/openapi.py            check, then (re)write OpenAPIDocument.swift
    python3 topology/openapi.py --check    check, and exit 1 if OpenAPIDocument.swift is not what it would write (CI)
    python3 topology/openapi.py --routes   check, then print every `METHOD /path` of the document, sorted

Checks: `openapi` is 3.1.x; every path item has operations and every operation has responses with valid
status keys; every `$ref` is local and resolves; path templates and path parameters agree; operationIds
are unique; the resource schemas copied from topology/schemas/*.json still match those files; when
jsonschema is installed, every component schema is valid JSON Schema 2020-12 and its `examples` validate.

The Swift file holds the document as compact JSON with sorted keys (what GET /openapi.json serves).
Needs PyYAML (jsonschema optional). Exits 0 when all is well, 1 on a failed check or a stale file,
2 when PyYAML is missing.
"""

import argparse
import json
import re
import sys
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover
    print("missing dependency: PyYAML (pip install pyyaml)", file=sys.stderr)
    sys.exit(2)

HERE = Path(__file__).resolve().parent
DOCUMENT = HERE / "openapi.yaml"
SCHEMAS = HERE / "schemas"
SWIFT = HERE.parent / "Sources" / "Ingress" / "OpenAPIDocument.swift"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
STATUS = re.compile(r"^([1-5][0-9]{2}|[1-5]XX|default)$")

# components/schemas copied from topology/schemas: component name -> (file, $defs entry or None).
COMMON = {
    "MerchantId": "merchantId", "OrderNo": "orderNo", "PaymentNo": "paymentNo", "PreAuthNo": "preAuthNo",
    "RefundNo": "refundNo", "SettlementId": "settlementId", "ExportTaskId": "exportTaskId",
    "PrintableText": "printableText", "UtcDate": "utcDate", "PositiveAmount": "positiveAmount",
    "NonNegativeAmount": "nonNegativeAmount", "Currency": "currency", "Country": "country",
    "PayMethod": "payMethod", "RoutingMode": "routingMode", "Metadata": "metadata",
    "UtcTimestamp": "utcTimestamp", "FieldErrors": "fieldErrors",
}
RESOURCES = {
    "Payment": "payment.json", "PreAuthorization": "pre_authorization.json", "Merchant": "merchant.json",
    "Order": "order.json", "Settlement": "settlement.json", "SettlementLine": "settlement_line.json",
    "ExportTask": "export_task.json", "CloudEvent": "cloudevent.json",
}
COPIES = {name: ("common.json", entry) for name, entry in COMMON.items()}
COPIES.update({name: (file, None) for name, file in RESOURCES.items()})
COPIES["RoutingDecision"] = ("payment.json", "routingDecision")


class Loader(yaml.SafeLoader):
    """YAML as JSON sees it: an unquoted 2026-12-01 stays a string."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def walk(node, path=""):
    """Yields (json pointer, node) for every node."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}/{index}")


def resolve(document, ref):
    """The node a local `#/...` reference names, or raises KeyError."""
    if not ref.startswith("#"):
        raise KeyError(f"{ref} is not a local reference (the document must be self-contained)")
    node = document
    for token in ref[1:].split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        elif isinstance(node, dict) and token in node:
            node = node[token]
        else:
            raise KeyError(f"{ref} does not resolve")
    return node


def deref(document, node):
    while isinstance(node, dict) and "$ref" in node and len(node) == 1:
        node = resolve(document, node["$ref"])
    return node


def expected_copy(name):
    """A topology/schemas definition as it must appear in components/schemas."""
    file, entry = COPIES[name]
    source = json.loads((SCHEMAS / file).read_text())
    if entry is not None:
        source = source["$defs"][entry]
    else:
        source.pop("examples", None)
        source.pop("$defs", None)
    by_file = {file: f"#/components/schemas/{component}" for component, file in RESOURCES.items()}
    by_common = {entry: f"#/components/schemas/{component}" for component, entry in COMMON.items()}

    def rewrite(node):
        if isinstance(node, dict):
            node = {key: rewrite(value) for key, value in node.items() if key not in ("$schema", "$id")}
            ref = node.get("$ref")
            if isinstance(ref, str):
                if ref.startswith("common.json#/$defs/"):
                    node["$ref"] = by_common[ref.rsplit("/", 1)[1]]
                elif ref == "#/$defs/routingDecision":
                    node["$ref"] = "#/components/schemas/RoutingDecision"
                elif ref in by_file:
                    node["$ref"] = by_file[ref]
            return node
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    return rewrite(source)


def check(document):
    """Every problem found, as sentences."""
    problems = []
    for path, node in walk(document):
        if isinstance(node, dict) and any(not isinstance(key, str) for key in node):
            problems.append(f"{path or '/'}: a key is not a string (quote status codes such as '200')")
        if not isinstance(node, (dict, list, str, int, float, bool, type(None))):
            problems.append(f"{path}: {type(node).__name__} is not a JSON value")
    if problems:
        return problems

    if not str(document.get("openapi", "")).startswith("3.1"):
        problems.append(f"openapi is {document.get('openapi')!r}, not 3.1.x")
    if not isinstance(document.get("info"), dict) or not {"title", "version"} <= document["info"].keys():
        problems.append("info needs a title and a version")

    for path, node in walk(document):
        if isinstance(node, dict) and isinstance(node.get("$ref"), str):
            try:
                resolve(document, node["$ref"])
            except KeyError as error:
                problems.append(f"{path}: {error.args[0]}")
    if problems:
        return problems

    operation_ids = {}
    paths = document.get("paths")
    if not isinstance(paths, dict) or not paths:
        return problems + ["the document has no paths"]
    for route, item in paths.items():
        if not route.startswith("/"):
            problems.append(f"path {route} does not start with /")
        item = deref(document, item)
        operations = {method: item[method] for method in METHODS if method in item}
        if not operations:
            problems.append(f"{route} has no operations")
        template = set(re.findall(r"{([^{}/]+)}", route))
        shared = [deref(document, parameter) for parameter in item.get("parameters", [])]
        for method, operation in operations.items():
            where = f"{method.upper()} {route}"
            responses = operation.get("responses")
            if not isinstance(responses, dict) or not responses:
                problems.append(f"{where} has no responses")
            else:
                problems += [f"{where}: response key {key!r} is not a status" for key in responses if not STATUS.match(key)]
            operation_id = operation.get("operationId")
            if operation_id in operation_ids:
                problems.append(f"{where}: operationId {operation_id} is also {operation_ids[operation_id]}'s")
            elif operation_id:
                operation_ids[operation_id] = where
            parameters = shared + [deref(document, parameter) for parameter in operation.get("parameters", [])]
            declared = {parameter.get("name") for parameter in parameters if parameter.get("in") == "path"}
            for name in sorted(template - declared):
                problems.append(f"{where}: path parameter {{{name}}} is not declared")
            for name in sorted(declared - template):
                problems.append(f"{where}: path parameter {name} is not in the path")
            for parameter in parameters:
                if parameter.get("in") == "path" and parameter.get("required") is not True:
                    problems.append(f"{where}: path parameter {parameter.get('name')} must be required")

    schemas = document.get("components", {}).get("schemas", {})
    for name in COPIES:
        if name not in schemas:
            problems.append(f"components/schemas/{name} is missing (a copy of {COPIES[name][0]})")
        elif schemas[name] != expected_copy(name):
            problems.append(f"components/schemas/{name} differs from topology/schemas/{COPIES[name][0]}"
                            + (f" $defs/{COPIES[name][1]}" if COPIES[name][1] else ""))

    problems += check_schemas(document, schemas)
    return problems


def check_schemas(document, schemas):
    """With jsonschema: each component schema is valid 2020-12 and its examples validate."""
    try:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012
    except ImportError:
        print("note: jsonschema not installed; component schemas and their examples not checked", file=sys.stderr)
        return []
    base = "https://payfleet.dev/openapi.json"
    registry = Registry().with_resource(base, Resource(contents=document, specification=DRAFT202012))
    problems = []
    for name, schema in schemas.items():
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            problems.append(f"components/schemas/{name} is not valid JSON Schema: {error.message}")
            continue
        validator = Draft202012Validator({"$ref": f"{base}#/components/schemas/{name}"}, registry=registry,
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        for index, example in enumerate(schema.get("examples", []) if isinstance(schema, dict) else []):
            for error in validator.iter_errors(example):
                problems.append(f"components/schemas/{name} examples[{index}]: {error.message}")
    return problems


def swift_source(document):
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    hashes = 1
    while '"""' + "#" * hashes in text or "\\" + "#" * hashes in text:
        hashes += 1
    delimiter = "#" * hashes
    return (
        "/// The ingress's OpenAPI 3.1 document (topology/openapi.yaml), generated by topology/openapi.py: do not edit.\n"
        "enum OpenAPIDocument {\n"
        f'    static let json = {delimiter}"""\n'
        f"    {text}\n"
        f'    """{delimiter}\n'
        "}\n"
    )


def routes(document):
    return sorted(f"{method.upper()} {route}" for route, item in document["paths"].items()
                  for method in METHODS if method in deref(document, item))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if OpenAPIDocument.swift is stale")
    mode.add_argument("--routes", action="store_true", help="print every METHOD /path, sorted")
    arguments = parser.parse_args()

    try:
        document = yaml.load(DOCUMENT.read_text(encoding="utf-8"), Loader=Loader)
    except (OSError, yaml.YAMLError) as error:
        print(f"{DOCUMENT.name}: {error}", file=sys.stderr)
        return 1
    if not isinstance(document, dict):
        print(f"{DOCUMENT.name}: not a mapping", file=sys.stderr)
        return 1
    problems = check(document)
    if problems:
        for problem in problems:
            print(f"{DOCUMENT.name}: {problem}", file=sys.stderr)
        print(f"{DOCUMENT.name}: {len(problems)} problem(s)", file=sys.stderr)
        return 1

    if arguments.routes:
        print("\n".join(routes(document)))
        return 0
    source = swift_source(document)
    relative = SWIFT.relative_to(HERE.parent)
    if arguments.check:
        current = SWIFT.read_text(encoding="utf-8") if SWIFT.exists() else None
        if current != source:
            state = "is missing" if current is None else "is not what topology/openapi.yaml generates"
            print(f"{relative} {state}: run python3 topology/openapi.py", file=sys.stderr)
            return 1
        print(f"{relative} is up to date ({len(routes(document))} routes)")
        return 0
    if not SWIFT.exists() or SWIFT.read_text(encoding="utf-8") != source:
        SWIFT.write_text(source, encoding="utf-8")
        print(f"wrote {relative} ({len(routes(document))} routes)")
    else:
        print(f"{relative} unchanged ({len(routes(document))} routes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
