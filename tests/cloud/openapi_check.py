#!/usr/bin/env python3
"""Checks cloud/openapi.yaml against the routes cloud/src/http_api.cpp registers.

Usage: openapi_check.py <repo root>

1. The yaml is structurally OpenAPI 3: "openapi" is 3.x.y, "info" has title and version,
   "paths" is a map of paths starting with "/", each holding operations with responses,
   and every "$ref" (local, "#/...") resolves.
2. The set of (method, path) pairs in the yaml equals the set registered in http_api.cpp
   with s.Get / s.Post / s.Put / s.Patch / s.Delete. A regex capture such as ([^/]+) in a
   route becomes {id} (the 2nd {id2}, ...); the yaml's own parameter names are
   normalised the same way, in order, so only the shape of the path counts.
3. The members some JSON builders of http_api.cpp write ({"name", value} pairs in the
   function's body) are exactly the properties of their schema (BUILDERS below), all of
   them required.

3. Every golden vector of schemas/vectors/workload_spec.json is valid against
   components.schemas.WorkloadSpec (python3-jsonschema), and a spec with a value the
   codec refuses (each of BAD_SPECS) is not: the REST body schema and the CDDL agree.

Exit 0 when consistent, 1 naming every problem, 2 on usage errors. Needs only Debian's
python3, python3-yaml and python3-jsonschema.
"""
import re
import sys
from pathlib import Path

import yaml

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# s.Get("...") or s.Get(R"(...)") / R"delim(...)delim", possibly split over lines.
ROUTE = re.compile(
    r'\bs\s*\.\s*(Get|Post|Put|Patch|Delete|Options)\s*\(\s*'
    r'(?:R"(?P<delim>[^()\\ ]{0,16})\((?P<raw>.*?)\)(?P=delim)"|"(?P<plain>(?:[^"\\]|\\.)*)")',
    re.S,
)
# A regex capture group: ([^/]+), (\d+), (.*) ... (not nested).
CAPTURE = re.compile(r"\((?!\?)[^()]*\)")
TEMPLATE = re.compile(r"\{[^{}/]+\}")


def numbered(path, pattern):
    """Replaces each match of pattern in path by {id}, {id2}, {id3}, ... in order."""
    count = 0

    def repl(_match):
        nonlocal count
        count += 1
        return "{id}" if count == 1 else "{id%d}" % count

    return pattern.sub(repl, path)


def routes_in_cpp(source):
    routes = set()
    for m in ROUTE.finditer(source):
        method = m.group(1).lower()
        if m.group("raw") is not None:
            path = m.group("raw")
        else:
            path = bytes(m.group("plain"), "utf-8").decode("unicode_escape")
        routes.add((method, numbered(path, CAPTURE)))
    return routes


def resolve_ref(doc, ref):
    if not ref.startswith("#/"):
        return False, "only local references are used here"
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, "no '%s'" % part
    return True, ""


def structure_problems(doc):
    problems = []
    if not isinstance(doc, dict):
        return ["the document is not a map"]
    version = str(doc.get("openapi", ""))
    if not re.fullmatch(r"3\.\d+\.\d+", version):
        problems.append("openapi: expected a 3.x.y version, got %r" % doc.get("openapi"))
    info = doc.get("info")
    if not isinstance(info, dict) or "title" not in info or "version" not in info:
        problems.append("info: expected a map with title and version")
    paths = doc.get("paths")
    if not isinstance(paths, dict) or not paths:
        problems.append("paths: expected a non-empty map")
        paths = {}
    for path, item in paths.items():
        if not str(path).startswith("/"):
            problems.append("paths.%s: a path must start with '/'" % path)
        if not isinstance(item, dict):
            problems.append("paths.%s: expected a map" % path)
            continue
        ops = [k for k in item if k in METHODS]
        if not ops:
            problems.append("paths.%s: no operation" % path)
        for op in ops:
            responses = item[op].get("responses") if isinstance(item[op], dict) else None
            if not isinstance(responses, dict) or not responses:
                problems.append("paths.%s.%s: no responses" % (path, op))
    # Every $ref resolves.
    def walk(node, where):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                ok, why = resolve_ref(doc, ref)
                if not ok:
                    problems.append("%s: $ref %s does not resolve (%s)" % (where, ref, why))
            for key, value in node.items():
                walk(value, "%s.%s" % (where, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, "%s[%d]" % (where, i))

    walk(doc, "openapi.yaml")
    return problems


# JSON builder function in http_api.cpp -> the components/schemas entry it produces.
BUILDERS = {"signals_json": "PlacementSignals"}


def members_written(source, function):
    """The "name" of every {"name", value} pair in the body of `json function(...)`."""
    start = re.search(r"\bjson\s+%s\s*\([^)]*\)\s*\{" % re.escape(function), source)
    if not start:
        return None
    depth, i = 1, start.end()
    while depth and i < len(source):
        depth += {"{": 1, "}": -1}.get(source[i], 0)
        i += 1
    return set(re.findall(r'\{"([A-Za-z0-9_]+)",', source[start.end():i]))


def builder_problems(doc, source):
    problems = []
    schemas = (doc.get("components") or {}).get("schemas") or {}
    for function, name in BUILDERS.items():
        written = members_written(source, function)
        schema = schemas.get(name)
        if written is None:
            problems.append("http_api.cpp: no function json %s(...)" % function)
            continue
        if not isinstance(schema, dict):
            problems.append("components.schemas.%s: missing (%s writes it)" % (name, function))
            continue
        described = set((schema.get("properties") or {}).keys())
        for m in sorted(written - described):
            problems.append("components.schemas.%s: no property '%s' (%s writes it)" % (name, m, function))
        for m in sorted(described - written):
            problems.append("components.schemas.%s: property '%s' is not written by %s" % (name, m, function))
        for m in sorted(written - set(schema.get("required") or [])):
            problems.append("components.schemas.%s: '%s' is always written, list it as required" % (name, m))
    return problems


# Changes to a valid service spec that the codec refuses (tests/schemas/codec_reject_test.cpp).
BAD_SPECS = [
    ("replicas", 0), ("replicas", 65), ("kind", "daemon"), ("restart_policy", "sometimes"),
    ("health_check", {"command": ["/bin/true"], "interval_s": 0}),
    ("health_check", {"command": ["/bin/true"], "failure_threshold": 101}),
    ("health_check", {"interval_s": 5}),
]


def vector_problems(doc, root):
    import json
    import jsonschema

    schema = {"$ref": "#/components/schemas/WorkloadSpec", "components": doc.get("components", {})}
    validator = jsonschema.Draft4Validator(schema)
    problems = []
    vectors = json.loads((root / "schemas" / "vectors" / "workload_spec.json").read_text(encoding="utf-8"))
    service = None
    for v in vectors["vectors"]:
        for error in validator.iter_errors(v["value"]):
            problems.append("workload_spec vector %s: %s" % (v["name"], error.message))
        if v["value"].get("kind") == "service":
            service = v["value"]
    if service is None:
        problems.append("workload_spec.json: no service vector to check refusals with")
        return problems
    for key, value in BAD_SPECS:
        bad = dict(service, **{key: value})
        if validator.is_valid(bad):
            problems.append("WorkloadSpec accepts %s = %r, which the codec refuses" % (key, value))
    return problems


def routes_in_yaml(doc):
    routes = set()
    for path, item in (doc.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        for op in item:
            if op in METHODS:
                routes.add((op, numbered(str(path), TEMPLATE)))
    return routes


def main(argv):
    if len(argv) != 2:
        print("usage: openapi_check.py <repo root>", file=sys.stderr)
        return 2
    root = Path(argv[1])
    spec_file = root / "cloud" / "openapi.yaml"
    cpp_file = root / "cloud" / "src" / "http_api.cpp"
    try:
        doc = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
        source = cpp_file.read_text(encoding="utf-8")
    except (OSError, yaml.YAMLError) as e:
        print("openapi_check: %s" % e, file=sys.stderr)
        return 1

    problems = structure_problems(doc)
    if isinstance(doc, dict):
        implemented = routes_in_cpp(source)
        if not implemented:
            problems.append("%s: no route registrations found (s.Get(...), s.Post(...), ...)" % cpp_file)
        described = routes_in_yaml(doc)
        for method, path in sorted(implemented - described):
            problems.append("missing from openapi.yaml: %s %s (registered in http_api.cpp)" % (method.upper(), path))
        for method, path in sorted(described - implemented):
            problems.append("extra in openapi.yaml: %s %s (not registered in http_api.cpp)" % (method.upper(), path))
        problems += builder_problems(doc, source)
        problems += vector_problems(doc, root)

    if problems:
        for p in problems:
            print("openapi_check: " + p, file=sys.stderr)
        print("openapi_check: FAILED (%d problem%s)" % (len(problems), "" if len(problems) == 1 else "s"),
              file=sys.stderr)
        return 1
    print("openapi_check: ok, %d routes match %s" % (len(implemented), cpp_file.relative_to(root)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
