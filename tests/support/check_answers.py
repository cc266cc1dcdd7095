"""Checks recorded API answers against the OpenAPI document that the same
app serves, with the `jsonschema` package (a validator we did not write).

Input (a JSON file, argv[1]): {"document": <the OpenAPI 3.1 document>,
"answers": [{"method", "route", "status", "body"}]}, where "route" is the
document's path template. For each answer the document must describe that
route, method and status with an `application/json` schema, and the body
must validate against it. Object schemas are made strict first (no property
the document does not name), so an answer with a field the document lacks
fails as surely as one missing a required field.

Prints every disagreement and exits 1 if there is any.
"""

import copy
import json
import sys

from jsonschema import Draft202012Validator


def strict(components):
    """Every object schema with properties refuses unnamed properties
    (`unevaluatedProperties: false`), except those composed by `allOf`
    (a flattened part), whose composing schema is made strict instead."""
    schemas = copy.deepcopy(components.get("schemas", {}))
    composed = set()

    def walk(node):
        if isinstance(node, dict):
            for part in node.get("allOf", []):
                ref = part.get("$ref", "") if isinstance(part, dict) else ""
                if ref.startswith("#/components/schemas/"):
                    composed.add(ref.rsplit("/", 1)[1])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schemas)

    def tighten(node, top_name=None):
        if isinstance(node, dict):
            if ("properties" in node or "allOf" in node) and top_name not in composed:
                if "additionalProperties" not in node and "unevaluatedProperties" not in node:
                    node["unevaluatedProperties"] = False
            for k, v in node.items():
                if k == "allOf":
                    for part in v:
                        # A composed part is checked by its composer.
                        if isinstance(part, dict) and "properties" in part:
                            for pv in part["properties"].values():
                                tighten(pv)
                        elif isinstance(part, dict):
                            pass
                elif k != "properties":
                    tighten(v)
                else:
                    for pv in v.values():
                        tighten(pv)
        elif isinstance(node, list):
            for v in node:
                tighten(v)

    for name, schema in schemas.items():
        tighten(schema, name)
    return {**components, "schemas": schemas}


def main():
    with open(sys.argv[1]) as f:
        data = json.load(f)
    doc = data["document"]
    components = strict(doc.get("components", {}))
    failures = []
    checked = set()
    for a in data["answers"]:
        where = f'{a["method"]} {a["route"]} -> {a["status"]}'
        op = doc.get("paths", {}).get(a["route"], {}).get(a["method"].lower())
        if op is None:
            failures.append(f"{where}: the document has no such route and method")
            continue
        response = op.get("responses", {}).get(str(a["status"]))
        if response is None:
            failures.append(f"{where}: the document does not describe this status")
            continue
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            failures.append(f"{where}: the document gives this answer no JSON schema")
            continue
        wrapper = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "components": components}
        errors = sorted(Draft202012Validator(wrapper).iter_errors(a["body"]), key=lambda e: list(e.absolute_path))
        for e in errors:
            path = "/".join(str(p) for p in e.absolute_path)
            failures.append(f"{where}: at /{path}: {e.message}")
        checked.add((a["method"], a["route"], a["status"]))
    for f in failures:
        print(f)
    print(f"{len(data['answers'])} answers of {len(checked)} route, method and status triples checked; "
          f"{len(failures)} disagreement(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
