#!/usr/bin/python3
"""Cross-checks nova-codec against the golden vectors with an independent decoder (cbor2).

Usage:
    cross_check_cbor2.py <nova-codec> <vectors dir>
    cross_check_cbor2.py --self-test <vectors dir>

Run with Debian's /usr/bin/python3 (python3-cbor2). For every vector of every
<vectors dir>/<type>.json it checks:
  (a) `<nova-codec> encode <type>` with the vector's JSON "value" on stdin exits 0 and
      writes CBOR bytes on stdout;
  (b) cbor2 decodes those bytes, as exactly one data item, to the vector's value once
      bytes are mapped to base64 text and +/-inf to "Infinity"/"-Infinity"; types must
      match too: a float member must come back a float (12.0, not 12), an integer
      member an integer;
  (c) the bytes equal the vector's "cbor" hex (deterministic encoding);
  (d) `<nova-codec> decode <type>` with the vector's CBOR bytes on stdin exits 0 and
      writes JSON on stdout that parses (strict JSON: no NaN/Infinity tokens, no
      duplicate keys) to the vector's value, with the same type rules.

--self-test needs no codec: it checks the vectors themselves (the hex decodes to the
value, the hex is the deterministic encoding of what it decodes to, "v" is 1, a zstd
batch inflates to its "inflated" samples and recompresses to the same bytes).

Prints one line per vector and a last line "N passed, M failed"; exits 1 on any failure.
"""

from __future__ import annotations

import base64
import ctypes
import io
import json
import math
import pathlib
import subprocess
import sys

import cbor2
from cbor2.encoder import CBOREncoder as PurePythonEncoder

# type -> error path root; every one of them must have a vector file.
TYPES = {
    "node_state": "state", "metrics_batch": "batch", "sensor_reading": "reading",
    "sensor_error": "error", "task": "task", "task_result": "result", "task_cancel": "cancel",
    "decision_record": "decision", "decision_verdict": "verdict", "alert": "alert",
    "config": "config", "model": "model", "ack": "ack", "workload_spec": "workload",
    "placement": "placement", "cluster_record": "cluster", "update_offer": "update",
}
TIMEOUT_S = 20


class Mismatch(Exception):
    pass


# --------------------------------------------------------------------------------------
# Values


def decode_cbor(data: bytes):
    """cbor2 decode of exactly one data item."""
    fp = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(fp).decode()
    except Exception as e:  # noqa: BLE001 - cbor2 raises several kinds
        raise Mismatch(f"cbor2 cannot decode: {e}") from None
    if fp.tell() != len(data):
        raise Mismatch(f"{len(data) - fp.tell()} trailing bytes after the CBOR item")
    return obj


def json_form(obj, path="$"):
    """The JSON codec's form of a decoded CBOR value."""
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    if isinstance(obj, float):
        if math.isnan(obj):
            raise Mismatch(f"{path}: NaN")
        if math.isinf(obj):
            return "Infinity" if obj > 0 else "-Infinity"
        return obj
    if isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, list):
        return [json_form(x, f"{path}[{i}]") for i, x in enumerate(obj)]
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise Mismatch(f"{path}: map key {k!r} is not a text string")
            out[k] = json_form(v, f"{path}.{k}")
        return out
    raise Mismatch(f"{path}: unexpected {type(obj).__name__} {obj!r}")


def _kind(x):
    for k in (bool, int, float, str, list, dict):
        if isinstance(x, k):
            return k.__name__
    return type(x).__name__


def compare(got, want, path="$"):
    """Raises Mismatch at the first difference; int, float and bool never mix."""
    if _kind(got) != _kind(want):
        raise Mismatch(f"{path}: got {_kind(got)} {got!r}, want {_kind(want)} {want!r}")
    if isinstance(want, dict):
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        if missing or extra:
            raise Mismatch(f"{path}: missing keys {missing}, unexpected keys {extra}")
        for k in want:
            compare(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        if len(got) != len(want):
            raise Mismatch(f"{path}: {len(got)} elements, want {len(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            compare(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        if not (got == want and math.copysign(1, got) == math.copysign(1, want)):
            raise Mismatch(f"{path}: got {got!r}, want {want!r}")
    elif got != want:
        raise Mismatch(f"{path}: got {got!r}, want {want!r}")


def parse_json_strict(text: str):
    def no_constant(name):
        raise Mismatch(f"JSON output has the non-standard token {name}")

    def no_duplicates(pairs):
        out = {}
        for k, v in pairs:
            if k in out:
                raise Mismatch(f"JSON output has the key {k!r} twice")
            out[k] = v
        return out

    try:
        return json.loads(text, parse_constant=no_constant, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise Mismatch(f"output is not JSON: {e}") from None


def canonical(obj) -> bytes:
    # cbor2's pure-Python encoder: its C extension (cbor2.dumps) writes floats of
    # magnitude 32768..65504 in single precision, which is not the shortest form.
    buf = io.BytesIO()
    PurePythonEncoder(buf, canonical=True).encode(obj)
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# zstd through the system library (the one our codec links)

_zstd = None


def zstd():
    global _zstd
    if _zstd is None:
        lib = ctypes.CDLL("libzstd.so.1")
        lib.ZSTD_getFrameContentSize.restype = ctypes.c_ulonglong
        lib.ZSTD_getFrameContentSize.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.ZSTD_decompress.restype = ctypes.c_size_t
        lib.ZSTD_decompress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                        ctypes.c_size_t]
        lib.ZSTD_compressBound.restype = ctypes.c_size_t
        lib.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
        lib.ZSTD_compress.restype = ctypes.c_size_t
        lib.ZSTD_compress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                      ctypes.c_size_t, ctypes.c_int]
        lib.ZSTD_isError.restype = ctypes.c_uint
        lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
        _zstd = lib
    return _zstd


def inflate(frame: bytes, limit=4 * 1024 * 1024) -> bytes:
    z = zstd()
    size = z.ZSTD_getFrameContentSize(frame, len(frame))
    if size >= 2**64 - 2:  # ZSTD_CONTENTSIZE_UNKNOWN / _ERROR
        raise Mismatch("zstd frame does not declare its content size")
    if size > limit:
        raise Mismatch(f"zstd frame inflates to {size} bytes, over {limit}")
    out = ctypes.create_string_buffer(max(size, 1))
    n = z.ZSTD_decompress(out, size, frame, len(frame))
    if z.ZSTD_isError(n) or n != size:
        raise Mismatch("zstd frame does not inflate")
    return out.raw[:n]


def deflate(data: bytes, level=3) -> bytes:
    z = zstd()
    cap = z.ZSTD_compressBound(len(data))
    out = ctypes.create_string_buffer(cap)
    n = z.ZSTD_compress(out, cap, data, len(data), level)
    if z.ZSTD_isError(n):
        raise Mismatch("ZSTD_compress failed")
    return out.raw[:n]


def explain_zstd_difference(got: bytes, vector) -> str:
    """When a zstd batch's bytes differ, say whether the samples still agree."""
    try:
        obj = decode_cbor(got)
        data = obj.get("data") if isinstance(obj, dict) else None
        if not isinstance(data, bytes) or "inflated" not in vector:
            return ""
        if inflate(data) == bytes.fromhex(vector["inflated"]["cbor"]):
            return (" (the zstd frames differ but inflate to the same samples: another"
                    " zstd version or parameters than ZSTD_compress level 3?)")
        return " (the zstd frame inflates to other bytes than the vector's samples)"
    except Mismatch as e:
        return f" ({e})"


# --------------------------------------------------------------------------------------


def load(vectors_dir: pathlib.Path):
    """[(type, vector)] of every file, after checking the files' headers."""
    out = []
    problems = []
    files = sorted(vectors_dir.glob("*.json"))
    found = set()
    for f in files:
        doc = json.loads(f.read_text(encoding="utf-8"))
        t = doc.get("type")
        if t not in TYPES:
            problems.append(f"{f.name}: unknown type {t!r}")
            continue
        if f.stem != t:
            problems.append(f"{f.name}: holds type {t!r}")
        if doc.get("root") != TYPES[t]:
            problems.append(f"{f.name}: root {doc.get('root')!r}, want {TYPES[t]!r}")
        if len(doc.get("vectors", [])) < 2:
            problems.append(f"{f.name}: fewer than 2 vectors")
        found.add(t)
        out.extend((t, v) for v in doc.get("vectors", []))
    for t in sorted(set(TYPES) - found):
        problems.append(f"no vector file for {t}")
    return out, problems


def run(codec, args, stdin: bytes):
    try:
        p = subprocess.run([codec, *args], input=stdin, capture_output=True,
                           timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise Mismatch(f"`{' '.join(args)}` timed out after {TIMEOUT_S} s") from None
    except OSError as e:
        raise Mismatch(f"cannot run {codec}: {e}") from None
    if p.returncode != 0:
        err = p.stderr.decode("utf-8", "replace").strip().splitlines()
        raise Mismatch(f"`{' '.join(args)}` exited {p.returncode}: "
                       f"{err[0] if err else '(no stderr)'}")
    return p.stdout


def check_with_codec(codec, type_name, vector):
    value = vector["value"]
    want = bytes.fromhex(vector["cbor"])
    failures = []

    # (a) encode
    try:
        got = run(codec, ["encode", type_name],
                  json.dumps(value, ensure_ascii=False).encode("utf-8"))
    except Mismatch as e:
        failures.append(f"(a) {e}")
        got = None
    if got is not None:
        # (b) independent decode
        try:
            compare(json_form(decode_cbor(got)), value)
        except Mismatch as e:
            failures.append(f"(b) {e}")
        # (c) byte equality
        if got != want:
            where = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y),
                         min(len(got), len(want)))
            failures.append(f"(c) bytes differ at offset {where}: got {len(got)} bytes"
                            f" {got[where:where + 12].hex()}..., want {len(want)} bytes"
                            f" {want[where:where + 12].hex()}..."
                            + explain_zstd_difference(got, vector))

    # (d) decode
    try:
        out = run(codec, ["decode", type_name], want)
        try:
            text = out.decode("utf-8")
        except UnicodeDecodeError:
            raise Mismatch("JSON output is not UTF-8") from None
        compare(parse_json_strict(text), value)
    except Mismatch as e:
        failures.append(f"(d) {e}")
    return failures


def check_vector_itself(type_name, vector):
    value = vector["value"]
    failures = []
    try:
        data = bytes.fromhex(vector["cbor"])
        if vector["cbor"] != data.hex():
            raise Mismatch("hex is not lowercase")
        obj = decode_cbor(data)
        compare(json_form(obj), value)
        if canonical(obj) != data:
            raise Mismatch(f"not the deterministic encoding: {canonical(obj).hex()}")
        if not isinstance(obj, dict) or obj.get("v") != 1:
            raise Mismatch('top-level "v" is not 1')
        if type_name == "metrics_batch" and obj.get("enc") == "zstd":
            if "inflated" not in vector:
                raise Mismatch('zstd batch without "inflated"')
            raw = inflate(obj["data"])
            if raw != bytes.fromhex(vector["inflated"]["cbor"]):
                raise Mismatch("data does not inflate to inflated.cbor")
            samples = decode_cbor(raw)
            compare(json_form(samples), vector["inflated"]["samples"], "$inflated")
            if canonical(samples) != raw:
                raise Mismatch("inflated samples are not deterministically encoded")
            if len(samples) != obj["count"]:
                raise Mismatch(f"count {obj['count']} but {len(samples)} samples")
            if deflate(raw, 3) != obj["data"]:
                raise Mismatch("ZSTD_compress level 3 of the samples gives other bytes")
    except (Mismatch, ValueError, KeyError, TypeError) as e:
        failures.append(f"{type(e).__name__ + ': ' if not isinstance(e, Mismatch) else ''}{e}")
    return failures


def main(argv):
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    self_test = argv[1] == "--self-test"
    codec = None if self_test else argv[1]
    vectors_dir = pathlib.Path(argv[2])
    if not vectors_dir.is_dir():
        print(f"not a directory: {vectors_dir}", file=sys.stderr)
        return 2

    vectors, problems = load(vectors_dir)
    passed = failed = 0
    for problem in problems:
        print(f"FAIL {problem}")
        failed += 1
    for type_name, vector in vectors:
        label = f"{type_name}/{vector.get('name', '?')}"
        if self_test:
            failures = check_vector_itself(type_name, vector)
        else:
            failures = check_with_codec(codec, type_name, vector)
        if failures:
            failed += 1
            print(f"FAIL {label}: {'; '.join(failures)}")
        else:
            passed += 1
            print(f"PASS {label}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
