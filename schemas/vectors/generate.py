#!/usr/bin/python3
"""Writes the golden vectors of the NovaCron topic API: schemas/vectors/<type>.json.

Run with Debian's Python (it needs python3-cbor2 5.4.6, python3-cryptography and libzstd1
from Debian 12):

    /usr/bin/python3 schemas/vectors/generate.py          # (re)write the files
    /usr/bin/python3 schemas/vectors/generate.py --check  # exit 1 if the files differ

Each file is
    {"type": <codec type name>, "root": <error path root>,
     "cddl": {"file": <family file>, "rule": <rule>},
     "vectors": [{"name", "description", "value", "cbor", ["inflated"]}]}
where "value" is the message as our JSON codec writes it (bytes as padded base64, the
infinities as the strings "Infinity"/"-Infinity") and "cbor" the lowercase hex of its
deterministic CBOR encoding (RFC 8949 section 4.2.1). A zstd metrics batch also has
"inflated": {"samples": [...], "cbor": <hex of the array that was compressed>}, so an
encoder whose zstd output differs in bytes can still be checked after inflating. A
qdelta batch has "inflated": {"columns": {...}, "cbor": <hex of the columns map that was
compressed>, "samples": [...]}, the samples being what decoding yields (the quantized
values); this script builds the columns and decodes them again with its own code.

It also writes schemas/vectors/signed/signed.json: signed envelopes (cddl/signed.cddl,
COSE_Sign1 with EdDSA) made with the fixed test key of seed 32 x 0x4e, each with its
claims, message, COSE payload, Sig_structure, Ed25519 signature (python3-cryptography)
and the whole envelope, read back by cbor2.

Before writing, every vector is checked:
  - against its CDDL rule in schemas/cddl/ (cddl_check.py), and the vectors of a type
    must between them show every optional member of every map both present and absent;
  - CBOR: encoded twice, by cbor2's pure-Python canonical encoder and by the small
    independent encoder below, which must agree byte for byte. cbor2's C extension
    (cbor2.dumps, the default) is not used: 5.4.6 writes floats with magnitude in
    [32768, 65504] as single precision although half precision holds them exactly.
"""

from __future__ import annotations

import base64
import ctypes
import io
import json
import math
import pathlib
import struct
import sys

import cbor2
from cbor2.encoder import CBOREncoder as PurePythonEncoder

HERE = pathlib.Path(__file__).resolve().parent
CDDL_DIR = HERE.parent / "cddl"
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))
import cddl_check  # noqa: E402

INF = math.inf
T0 = 1732650000000  # 2024-11-26T19:40:00Z, in ms

# type name -> (error path root, CDDL family file, CDDL rule)
TYPES = {
    "node_state": ("state", "node_state.cddl", "node-state"),
    "metrics_batch": ("batch", "metrics.cddl", "metrics-batch"),
    "sensor_reading": ("reading", "sensor.cddl", "sensor-reading"),
    "sensor_error": ("error", "sensor.cddl", "sensor-error"),
    "task": ("task", "task.cddl", "task"),
    "task_result": ("result", "task.cddl", "task-result"),
    "task_cancel": ("cancel", "task.cddl", "task-cancel"),
    "decision_record": ("decision", "decision.cddl", "decision-record"),
    "decision_verdict": ("verdict", "decision.cddl", "decision-verdict"),
    "alert": ("alert", "alert.cddl", "alert"),
    "config": ("config", "config.cddl", "config"),
    "model": ("model", "model.cddl", "model"),
    "ack": ("ack", "ack.cddl", "ack"),
    "update_offer": ("update", "update.cddl", "update-offer"),
    "workload_spec": ("workload", "workload.cddl", "workload-spec"),
    "placement": ("placement", "workload.cddl", "placement"),
    "cluster_record": ("cluster", "cluster.cddl", "cluster-record"),
}

# --------------------------------------------------------------------------------------
# Encoding


def cbor_cbor2(obj) -> bytes:
    buf = io.BytesIO()
    PurePythonEncoder(buf, canonical=True).encode(obj)
    return buf.getvalue()


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for ai, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | ai]) + struct.pack(fmt, n)
    raise ValueError(f"integer {n} too large")


def _float(x: float) -> bytes:
    if math.isnan(x):
        raise ValueError("NaN is never valid")
    for prefix, fmt in ((0xF9, ">e"), (0xFA, ">f")):
        try:
            packed = struct.pack(fmt, x)
        except OverflowError:
            continue
        back = struct.unpack(fmt, packed)[0]
        if back == x and math.copysign(1, back) == math.copysign(1, x):
            return bytes([prefix]) + packed
    return b"\xfb" + struct.pack(">d", x)


def cbor_independent(obj) -> bytes:
    """Deterministic CBOR for the value kinds our messages use."""
    if obj is True:
        return b"\xf5"
    if obj is False:
        return b"\xf4"
    if obj is None:
        return b"\xf6"
    if isinstance(obj, int):
        return _head(0, obj) if obj >= 0 else _head(1, -1 - obj)
    if isinstance(obj, float):
        return _float(obj)
    if isinstance(obj, bytes):
        return _head(2, len(obj)) + obj
    if isinstance(obj, str):
        raw = obj.encode("utf-8")
        return _head(3, len(raw)) + raw
    if isinstance(obj, list):
        return _head(4, len(obj)) + b"".join(cbor_independent(x) for x in obj)
    if isinstance(obj, dict):
        items = sorted((cbor_independent(k), cbor_independent(v)) for k, v in obj.items())
        return _head(5, len(items)) + b"".join(k + v for k, v in items)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encode(obj) -> bytes:
    a, b = cbor_cbor2(obj), cbor_independent(obj)
    if a != b:
        raise AssertionError(f"encoders disagree:\n  cbor2 {a.hex()}\n  ours  {b.hex()}")
    if cbor2.loads(a) != obj:
        raise AssertionError("encoding does not decode to the value")
    return a


_zstd = ctypes.CDLL("libzstd.so.1")
_zstd.ZSTD_compressBound.restype = ctypes.c_size_t
_zstd.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
_zstd.ZSTD_compress.restype = ctypes.c_size_t
_zstd.ZSTD_compress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                ctypes.c_size_t, ctypes.c_int]
_zstd.ZSTD_isError.restype = ctypes.c_uint
_zstd.ZSTD_isError.argtypes = [ctypes.c_size_t]
_zstd.ZSTD_decompress.restype = ctypes.c_size_t
_zstd.ZSTD_decompress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                  ctypes.c_size_t]


def zstd_compress(src: bytes, level: int = 3) -> bytes:
    cap = _zstd.ZSTD_compressBound(len(src))
    dst = ctypes.create_string_buffer(cap)
    n = _zstd.ZSTD_compress(dst, cap, src, len(src), level)
    if _zstd.ZSTD_isError(n):
        raise RuntimeError("ZSTD_compress failed")
    out = dst.raw[:n]
    back = ctypes.create_string_buffer(len(src) + 1)
    m = _zstd.ZSTD_decompress(back, len(src) + 1, out, len(out))
    if _zstd.ZSTD_isError(m) or back.raw[:m] != src:
        raise RuntimeError("zstd round trip failed")
    return out


def to_json_form(obj):
    """The JSON codec's form: bytes -> base64, +/-inf -> "Infinity"/"-Infinity"."""
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    if isinstance(obj, float) and math.isinf(obj):
        return "Infinity" if obj > 0 else "-Infinity"
    if isinstance(obj, list):
        return [to_json_form(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_json_form(v) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------------------
# The vectors. Values are written in wire form: float fields as Python floats (12.0, not
# 12), integer fields as ints, byte strings as bytes, the infinities as math.inf.


def V(name, description, value, **extra):
    return {"name": name, "description": description, "value": value, **extra}


def pos(node, stream, seq, first=None):
    """A stream position; "first" (the lowest seq the sender still holds) only if given."""
    p = {"node": node, "stream": stream, "seq": seq}
    if first is not None:
        p["first"] = first
    return p


def zstd_batch(name, description, position, samples):
    raw = encode(samples)
    value = {"v": 1, **position, "enc": "zstd", "count": len(samples),
             "data": zstd_compress(raw, 3)}
    inflated = {"samples": to_json_form(samples), "cbor": raw.hex()}
    return V(name, description, value, inflated=inflated)


# qdelta (metrics.cddl): values in integer steps of each field's precision, rounded half
# away from zero; columns of first value then deltas, null where a sample lacks a field.
QDELTA_PLACES = {"ts": 0, "cpu": 1, "mem": 1, "disk": 1, "load1": 2, "net_rx": 0,
                 "net_tx": 0, "temp": 1, "throttled": 0, "power": 2}
QDELTA_REQUIRED = ("ts", "cpu", "mem", "disk", "load1", "net_rx", "net_tx")
POW10 = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]
MAX_STEPS = 1 << 50
AUTO_PLACES = 3


def to_steps(x, places: int) -> int:
    y = float(x) * POW10[places]
    a = abs(y)
    r = math.floor(a)
    if a - r >= 0.5:  # exact: the fraction of a double is a double
        r += 1
    q = r if y >= 0 else -r
    if abs(q) > MAX_STEPS:
        raise ValueError(f"{x} does not fit 2^50 steps of 10^-{places}")
    return q


def from_steps(q: int, places: int) -> float:
    return float(q) / POW10[places]  # q <= 2^50 is exact as a float


def extra_places(samples, name, declared):
    values = [s["extra"][name] for s in samples if name in s.get("extra", {})]
    if name in declared:
        return min(declared[name], 9)
    for c in range(AUTO_PLACES):
        if all(from_steps(to_steps(x, c), c) == x for x in values):
            return c
    return AUTO_PLACES


def delta_column(steps):
    out, prev, seen = [], 0, False
    for q in steps:
        if q is None:
            out.append(None)
            continue
        out.append(q - prev if seen else q)
        prev, seen = q, True
    return out


def qdelta_columns(samples, declared):
    def value(s, key):
        v = s.get(key)
        if key == "throttled" and v is not None:
            return 1 if v else 0
        return v

    cols = {}
    for key, places in QDELTA_PLACES.items():
        steps = [None if value(s, key) is None else to_steps(value(s, key), places)
                 for s in samples]
        if key in QDELTA_REQUIRED or any(q is not None for q in steps):
            cols[key] = delta_column(steps)
    names = sorted({k for s in samples for k in s.get("extra", {})})
    if names:
        cols["extra"] = {}
        for name in names:
            d = extra_places(samples, name, declared)
            steps = [to_steps(s["extra"][name], d) if name in s.get("extra", {}) else None
                     for s in samples]
            cols["extra"][name] = [d, delta_column(steps)]
    return cols


def qdelta_decode(cols, count):
    """Independent of qdelta_columns: columns back to (quantized) samples."""
    def undelta(column):
        assert len(column) == count
        out, prev, seen = [], 0, False
        for v in column:
            if v is None:
                out.append(None)
                continue
            prev = prev + v if seen else v
            seen = True
            out.append(prev)
        return out

    samples = [{} for _ in range(count)]
    for key, places in QDELTA_PLACES.items():
        if key not in cols:
            continue
        for s, q in zip(samples, undelta(cols[key])):
            if q is None:
                continue
            if key == "ts":
                s[key] = q
            elif key == "throttled":
                s[key] = q == 1
            else:
                s[key] = from_steps(q, places)
    for name, (places, column) in cols.get("extra", {}).items():
        for s, q in zip(samples, undelta(column)):
            if q is not None:
                s.setdefault("extra", {})[name] = from_steps(q, places)
    return samples


def qdelta_batch(name, description, position, samples, declared):
    cols = qdelta_columns(samples, declared)
    raw = encode(cols)
    value = {"v": 1, **position, "enc": "qdelta", "count": len(samples),
             "data": zstd_compress(raw, 3)}
    inflated = {"columns": to_json_form(cols), "cbor": raw.hex(),
                "samples": to_json_form(qdelta_decode(cols, len(samples)))}
    return V(name, description, value, inflated=inflated)


SAMPLE_MINIMAL = {
    "ts": T0, "cpu": 12.0, "mem": 0.1, "disk": 55.5, "load1": 0.75,
    "net_rx": 1234567.0, "net_tx": 40000.0,
}
SAMPLE_FULL = {
    "ts": T0 + 10000, "cpu": 100.0, "mem": 87.25, "disk": 0.0, "load1": 3.5,
    "net_rx": 0.0, "net_tx": 1.5e-05, "temp": 61.5, "throttled": True, "power": 7.25,
    "extra": {"gpu_pct": 33.3, "fan_rpm": 2400.0, "soc.temp": -12.5},
}
SAMPLE_COLD = {
    "ts": T0 + 20000, "cpu": 0.5, "mem": 40.0, "disk": 99.9, "load1": 0.0,
    "net_rx": 65504.0, "net_tx": 70000.0, "temp": -40.0, "throttled": False,
}

VECTORS = {
    "node_state": [
        V("online_full", "birth with every optional member (caps, region)",
          {"v": 1, "node": "gw-par-01", "status": "online", "bdseq": 7, "ts": T0,
           "level": 4, "site": "cloud/eu/par/acc-01", "arch": "aarch64",
           "version": "1.4.2", "caps": ["gpu", "arm64"],
           "res": {"cpu_millis": 4000, "memory_mb": 8192, "storage_mb": 65536},
           "region": "eu-west"}),
        V("online_minimal", "birth of a device without caps or region; bdseq 0",
          {"v": 1, "node": "dev-0042", "status": "online", "bdseq": 0, "ts": T0 + 1,
           "level": 5, "site": "cloud/eu/par/acc-01", "arch": "riscv64",
           "version": "1.4.2-rc.1",
           "res": {"cpu_millis": 1000, "memory_mb": 512, "storage_mb": 0}}),
        V("online_not_ready", "birth of a node whose broker refused one subscription",
          {"v": 1, "node": "dev-0042", "status": "online", "bdseq": 3, "ts": T0 + 2,
           "level": 5, "site": "cloud/eu/par/acc-01", "arch": "riscv64",
           "version": "1.4.2",
           "res": {"cpu_millis": 1000, "memory_mb": 512, "storage_mb": 0},
           "refused": ["nova/v1/sensor/dev-0042/#"]}),
        V("online_running_revisions", "birth naming the remote config and model revisions it runs",
          {"v": 1, "node": "dev-0042", "status": "online", "bdseq": 4, "ts": T0 + 3,
           "level": 5, "site": "cloud/eu/par/acc-01", "arch": "riscv64",
           "version": "1.4.2",
           "res": {"cpu_millis": 1000, "memory_mb": 512, "storage_mb": 0},
           "config_revision": 1732650000123, "model_revision": 7}),
        V("online_running_model", "birth naming the id and revision of the model in force",
          {"v": 1, "node": "dev-0042", "status": "online", "bdseq": 5, "ts": T0 + 4,
           "level": 5, "site": "cloud/eu/par/acc-01", "arch": "riscv64",
           "version": "1.4.2",
           "res": {"cpu_millis": 1000, "memory_mb": 512, "storage_mb": 0},
           "model_revision": 1732650000456, "model_id": "overheat-lr"}),
        V("dead_big_bdseq", "last will; bdseq above 2^32 (a 64-bit CBOR head)",
          {"v": 1, "node": "gw-par-01", "status": "dead", "bdseq": 4294967301,
           "ts": T0}),
        V("offline", "graceful goodbye: no description members",
          {"v": 1, "node": "dev-0042", "status": "offline", "bdseq": 8,
           "ts": T0 + 3600000}),
    ],
    "metrics_batch": [
        V("plain_minimal_sample",
          "plain batch, one sample without optional members; floats: 12.0 (integral, "
          "half), 0.1 (double only), 1234567.0 (single), 40000.0 (half, above 32768)",
          {"v": 1, **pos("gw-par-01", "metrics", 1), "enc": "plain",
           "samples": [SAMPLE_MINIMAL]}),
        V("plain_full_samples",
          "plain batch, seq above 2^32, a sample with every optional member and one "
          "with some; 65504.0 (largest half), 70000.0 (single), 1.5e-05 (double)",
          {"v": 1, **pos("gw-par-01", "metrics", 4294967297), "enc": "plain",
           "samples": [SAMPLE_FULL, SAMPLE_COLD]}),
        zstd_batch("zstd_three_samples",
                   "zstd batch (ZSTD_compress level 3 of the samples array's CBOR)",
                   pos("gw-par-01", "metrics", 2),
                   [SAMPLE_MINIMAL, SAMPLE_FULL, SAMPLE_COLD]),
        qdelta_batch("qdelta_four_samples",
                     "qdelta batch: values rounded to their precision (12.345 -> 12.3, "
                     "0.7100000000000001 -> 0.71, 1234.5 -> 1235 and cpu 0.25 -> 0.3: half "
                     "away from zero), negative deltas, temp/throttled/power and extra gauges "
                     "absent in some samples; extra places declared (cpu.user 1, "
                     "rss_kb 0) or chosen (load5 2, fan_rpm 0, soc.temp 1, tiny 3)",
                     pos("gw-par-01", "metrics", 3),
                     [{"ts": T0, "cpu": 12.345, "mem": 4.122006999487767,
                       "disk": 21.049085011232325, "load1": 0.7100000000000001,
                       "net_rx": 1234.5, "net_tx": 0.25,
                       "extra": {"cpu.user": 7.77, "rss_kb": 11340.0, "load5": 0.65,
                                 "tiny": 0.00012}},
                      {"ts": T0 + 1000, "cpu": 9.95, "mem": 4.15, "disk": 21.05,
                       "load1": 0.69, "net_rx": 80.0, "net_tx": 1e-09, "temp": 61.55,
                       "throttled": True, "power": 7.254,
                       "extra": {"cpu.user": 5.0, "rss_kb": 11336.4, "fan_rpm": 2400.0,
                                 "soc.temp": -12.5}},
                      {"ts": T0 + 1999, "cpu": 100.0, "mem": 0.0, "disk": 99.96,
                       "load1": 12.0, "net_rx": 3.5e9, "net_tx": 0.0, "temp": -40.05,
                       "throttled": False, "extra": {"load5": 0.66}},
                      {"ts": T0 + 3000, "cpu": 0.25, "mem": 4.1, "disk": 21.0,
                       "load1": 0.7, "net_rx": 1234.0, "net_tx": 1.0}],
                     {"cpu.user": 1, "rss_kb": 0}),
        qdelta_batch("qdelta_one_sample",
                     "qdelta batch of one plain sample: every column holds just its "
                     "first value, no optional column",
                     pos("gw-par-01", "metrics", 4), [SAMPLE_MINIMAL], {}),
        zstd_batch("zstd_first_after_eviction",
                   "zstd batch of one sample declaring first 40 (the CDDL's zstd map "
                   "carries the position too)",
                   pos("gw-par-01", "metrics", 41, first=40), [SAMPLE_MINIMAL]),
        qdelta_batch("qdelta_first_after_eviction",
                     "qdelta batch of one sample declaring first 40",
                     pos("gw-par-01", "metrics", 43, first=40), [SAMPLE_MINIMAL], {}),
        V("plain_first_after_eviction",
          "plain batch declaring first 40: seqs below 40 that were not acknowledged "
          "were evicted by the sender and will never be sent",
          {"v": 1, **pos("gw-par-01", "metrics", 42, first=40), "enc": "plain",
           "samples": [SAMPLE_MINIMAL]}),
    ],
    "sensor_reading": [
        V("json_example_minimal", "the smallest reading: one value, no seq, no unit",
          {"v": 1, "ts": T0, "values": {"temp": 21.5}}),
        V("full_unicode_unit", "seq and a non-ASCII unit; negative and double-only values",
          {"v": 1, "ts": T0 + 500, "seq": 42,
           "values": {"t_in": 21.5, "t_out": -3.75, "t_dew": 0.1}, "unit": "°C"}),
        V("thirty_two_values", "the largest allowed number of values; seq 2^40",
          {"v": 1, "ts": T0 + 1000, "seq": 1099511627776,
           "values": {f"ch{i:02d}": float(i) / 4 for i in range(32)}, "unit": "V"}),
    ],
    "sensor_error": [
        V("whole_payload", "the agent's reply to the CBOR reading a1 61 76, cut short: "
          "the whole payload is at fault, so field is empty",
          {"v": 1, "sensor": "s1", "ts": T0 + 2,
           "field": "", "reason": "truncated input"}),
        V("field_path", "the agent's reply to the JSON reading "
          "{\"v\":1,\"ts\":1732650000000,\"values\":{\"temp\":\"warm\"}}: a member's type was wrong",
          {"v": 1, "sensor": "thermo-7", "ts": T0 + 3,
           "field": "reading.values.temp", "reason": "expected float, got text string"}),
        V("unicode_reason", "non-ASCII reason text",
          {"v": 1, "sensor": "thermo-7", "ts": T0 + 4,
           "field": "reading.values", "reason": "clé « humidité » : pas un identifiant"}),
    ],
    "task": [
        V("full", "every optional member (workload_id, env); the longest timeout (7 days)",
          {"v": 1, "task_id": "t-20241126-0001", "workload_id": "wl-anomaly",
           "argv": ["/usr/bin/python3", "-c", "print('héllo wörld')"],
           "env": {"LANG": "C.UTF-8", "NOVA_MODE": "edge"},
           "timeout_ms": 604800000, "memory_mb": 256, "cpu_millis": 500,
           "priority": 0, "issued_ts": T0}),
        V("minimal", "no workload_id, no env (omitted when empty), no limits",
          {"v": 1, "task_id": "t-2", "argv": ["uptime"], "timeout_ms": 1,
           "memory_mb": 0, "cpu_millis": 0, "priority": 9, "issued_ts": T0 + 5}),
        V("service_full_check", "a service replica's task; a health check with every member",
          {"v": 1, "task_id": "web.0.r1", "workload_id": "web",
           "argv": ["/usr/bin/nginx", "-g", "daemon off;"],
           "timeout_ms": 604800000, "memory_mb": 64, "cpu_millis": 0, "priority": 3,
           "issued_ts": T0 + 6,
           "service": {"restart_policy": "always",
                       "health_check": {"command": ["/usr/bin/curl", "-fs", "http://127.0.0.1/"],
                                        "interval_s": 2, "timeout_s": 1, "failure_threshold": 2,
                                        "initial_delay_s": 3}}}),
        V("service_default_check", "a service whose health check has only its command (defaults)",
          {"v": 1, "task_id": "db.1.r2", "argv": ["/usr/bin/redis-server"],
           "timeout_ms": 60000, "memory_mb": 0, "cpu_millis": 0, "priority": 3, "issued_ts": T0 + 7,
           "service": {"restart_policy": "on-failure",
                       "health_check": {"command": ["/usr/bin/redis-cli", "ping"]}}}),
        V("service_no_check", "a service without a health check, never restarted",
          {"v": 1, "task_id": "once.0.r1", "argv": ["/bin/sleep", "3600"],
           "timeout_ms": 1, "memory_mb": 0, "cpu_millis": 0, "priority": 3, "issued_ts": T0 + 8,
           "service": {"restart_policy": "never"}}),
    ],
    "task_result": [
        V("ok_unicode_output", "success with a non-ASCII output tail",
          {"v": 1, **pos("gw-par-01", "results", 1), "task_id": "t-20241126-0001",
           "status": "ok", "exit_code": 0, "started_ts": T0 + 10, "finished_ts": T0 + 1510,
           "output": "Température : 21.5 °C\nok ✓\n"}),
        V("killed_negative_exit", "killed by SIGKILL: negative exit code, with a reason",
          {"v": 1, **pos("gw-par-01", "results", 2), "task_id": "t-3",
           "status": "killed", "exit_code": -9, "started_ts": T0 + 20,
           "finished_ts": T0 + 90020, "output": "",
           "reason": "memory limit of 256 MB exceeded"}),
        V("refused_never_started", "refused: no exit_code, no started_ts",
          {"v": 1, **pos("dev-0042", "results", 5000000000), "task_id": "t-4",
           "status": "refused", "finished_ts": T0 + 30, "output": "",
           "reason": "queue full (64 tasks)"}),
        V("cancelled_by_signal", "cancelled: stopped by SIGTERM, with the cancel's reason",
          {"v": 1, **pos("gw-par-01", "results", 10), "task_id": "wl-anomaly.r1",
           "status": "cancelled", "exit_code": -15, "started_ts": T0 + 300,
           "finished_ts": T0 + 420, "output": "",
           "reason": "cancelled: migration to dev-b: SIGTERM sent to its process group"}),
        V("ok_first_equals_seq", "success; first == seq: this is the oldest record held",
          {"v": 1, **pos("gw-par-01", "results", 9, first=9), "task_id": "t-9",
           "status": "ok", "exit_code": 0, "started_ts": T0 + 200, "finished_ts": T0 + 300,
           "output": ""}),
        V("service_restarted", "a service's state report: running again after 2 restarts, the last "
          "run killed by SIGKILL",
          {"v": 1, **pos("dev-a", "results", 11), "task_id": "web.0.r1",
           "status": "running", "started_ts": T0 + 500, "finished_ts": T0 + 2600, "output": "",
           "reason": "restarted after exit -9",
           "service": {"state": "running", "restarts": 2, "last_exit": -9, "health_failures": 0}}),
        V("service_unhealthy", "a service's state report: its health check failed twice in a row",
          {"v": 1, **pos("dev-b", "results", 12), "task_id": "web.1.r1",
           "status": "running", "started_ts": T0 + 500, "finished_ts": T0 + 4000, "output": "",
           "service": {"state": "unhealthy", "restarts": 0, "health_failures": 2}}),
    ],
    "task_cancel": [
        V("with_reason", "a migration's cancel, with its reason",
          {"v": 1, "task_id": "wl-anomaly.r1", "reason": "migration to dev-b: cpu above 90 %",
           "issued_ts": T0 + 400}),
        V("minimal", "no reason",
          {"v": 1, "task_id": "t-2", "issued_ts": T0 + 5}),
    ],
    "decision_record": [
        V("offline_with_inputs", "taken offline, with inputs",
          {"v": 1, **pos("gw-par-01", "decisions", 17), "decision_id": "d-0017",
           "ts": T0 + 40, "kind": "resource_allocation",
           "inputs": {"cpu": 97.5, "queue_len": 12.0, "temp": 81.25},
           "action": "throttle the task queue to 1 slot", "confidence": 0.875,
           "offline": True}),
        V("no_inputs", "online, no inputs (omitted when empty), confidence 1.0",
          {"v": 1, **pos("gw-par-01", "decisions", 18), "decision_id": "d-0018",
           "ts": T0 + 50, "kind": "migration",
           "action": "move wl-anomaly to gw-par-02", "confidence": 1.0,
           "offline": False}),
        V("first_one", "first 1: nothing below seq 1 exists, a valid if empty statement",
          {"v": 1, **pos("gw-par-01", "decisions", 19, first=1), "decision_id": "d-0019",
           "ts": T0 + 55, "kind": "migration", "action": "keep wl-anomaly",
           "confidence": 0.5, "offline": True}),
        V("applies_verdict", "carries out the verdict on d-0017 (applies)",
          {"v": 1, **pos("gw-par-01", "decisions", 20), "decision_id": "decision-20",
           "ts": T0 + 75, "kind": "verdict_applied",
           "inputs": {"warning": 80.0, "critical": 85.0},
           "action": "cpu levels set to warning 80 critical 85 (were 90 97)",
           "confidence": 1.0, "offline": False, "applies": "d-0017"}),
        V("rule_target", "a rule's request_migration, naming the workload (target)",
          {"v": 1, **pos("gw-par-01", "decisions", 21), "decision_id": "decision-21",
           "ts": T0 + 80, "kind": "rule.overheat", "inputs": {"mean": 96.5},
           "action": "request_migration", "confidence": 1.0, "offline": True,
           "target": "wl-anomaly"}),
    ],
    "decision_verdict": [
        V("accepted", "accepted, no reason",
          {"v": 1, "decision_id": "d-0017", "node": "gw-par-01",
           "verdict": "accepted", "ts": T0 + 60}),
        V("overridden_unicode_reason", "overridden, with a non-ASCII reason",
          {"v": 1, "decision_id": "d-0018", "node": "gw-par-01",
           "verdict": "overridden",
           "reason": "dépasse le budget énergétique du site", "ts": T0 + 70}),
        V("overridden_threshold", "overridden with new threshold levels for one gauge",
          {"v": 1, "decision_id": "d-0017", "node": "gw-par-01",
           "verdict": "overridden", "reason": "cpu warning 90 above the policy's 80",
           "ts": T0 + 72, "gauge": "cpu", "warning": 80.0, "critical": 85.0}),
        V("rejected", "rejected, with a reason",
          {"v": 1, "decision_id": "d-0019", "node": "gw-par-01",
           "verdict": "rejected", "reason": "conflicts with placement revision 12",
           "ts": T0 + 80}),
    ],
    "alert": [
        V("finite_threshold", "critical alert, finite threshold, non-ASCII message",
          {"v": 1, **pos("gw-par-01", "alerts", 3), "alert_id": "a-0003", "ts": T0 + 90,
           "severity": "critical", "metric": "temp", "observed": 91.5,
           "threshold": 85.0, "message": "hottest zone 91.5 °C > 85 °C"}),
        V("infinity_threshold", "threshold +Infinity (CBOR f97c00), empty message",
          {"v": 1, **pos("dev-0042", "alerts", 1), "alert_id": "a-0001", "ts": T0 + 100,
           "severity": "info", "metric": "sensor.s1.temp", "observed": -12.5,
           "threshold": INF, "message": ""}),
        V("minus_infinity_threshold", "threshold -Infinity (CBOR f9fc00)",
          {"v": 1, **pos("dev-0042", "alerts", 2), "alert_id": "a-0002", "ts": T0 + 110,
           "severity": "warning", "metric": "load1", "observed": 0.0,
           "threshold": -INF, "message": "load below the band"}),
        V("first_above_watermark", "first 7 at seq 8: seqs below 7 not yet acknowledged "
          "were evicted",
          {"v": 1, **pos("dev-0042", "alerts", 8, first=7), "alert_id": "a-0008",
           "ts": T0 + 115, "severity": "warning", "metric": "cpu", "observed": 99.0,
           "threshold": 95.0, "message": "cpu above the band"}),
    ],
    "config": [
        V("all_value_kinds",
          "bool, int (incl. -5), float (incl. integral 3.0 and double-only 0.1), text "
          "(incl. non-ASCII)",
          {"v": 1, "revision": 12, "ts": T0 + 120,
           "values": {"agent.offline_mode": True, "outbox.max_bytes": 67108864,
                      "anomaly.z_min": -5, "metrics.interval_s": 2.5,
                      "anomaly.zscore": 3.0, "stream.window_s": 0.1,
                      "log.level": "debug", "site.label": "Zürich Nord"}}),
        V("empty_values", "no values: \"values\" is still written, as an empty map",
          {"v": 1, "revision": 1, "ts": T0 + 130, "values": {}}),
        V("big_int_false_empty_text", "int above 2^32, false, empty text",
          {"v": 1, "revision": 4294967296, "ts": T0 + 140,
           "values": {"outbox.max_bytes": 8589934592, "agent.offline_mode": False,
                      "site.label": ""}}),
    ],
    "model": [
        V("zscore_params_only", "params, no weights (omitted when empty)",
          {"v": 1, "model_id": "anomaly-cpu", "revision": 3, "kind": "zscore",
           "params": {"window": 60.0, "z": 3.0}, "ts": T0 + 150}),
        V("linear_with_weights",
          "weights at float boundaries: 65504.0 (largest half), 5.960464477539063e-08 "
          "(smallest half subnormal), 1e+20 (double only), 0.1",
          {"v": 1, "model_id": "power-linear", "revision": 1, "kind": "linear",
           "params": {"bias": 0.25},
           "weights": [0.1, -2.5, 65504.0, 5.960464477539063e-08, 1e+20],
           "ts": T0 + 160}),
        V("minimal", "no params, no weights",
          {"v": 1, "model_id": "noop", "revision": 0, "kind": "constant",
           "ts": T0 + 170}),
        V("logistic", "logistic regression over two gauges: a weight per feature, bias and "
          "threshold in params, the decision's action text",
          {"v": 1, "model_id": "overheat-lr", "revision": 1732650000456, "kind": "logistic",
           "params": {"bias": -12.5, "threshold": 0.8},
           "weights": [0.25, 1.5], "features": ["cpu", "sensor.s1.temp"],
           "action": "cooling requested", "ts": T0 + 171}),
        V("tree_ensemble", "two trees of a split and two leaves, and a lone leaf; one split "
          "sends a sample without its feature right; mean of the leaves through a sigmoid",
          {"v": 1, "model_id": "vib-trees", "revision": 2, "kind": "tree_ensemble",
           "params": {"threshold": 0.5},
           "features": ["sensor.pump.vib", "load1"],
           "trees": [[{"feature": 0, "split": 3.5, "left": 1, "right": 2},
                      {"leaf": -1.0}, {"leaf": 2.0}],
                     [{"feature": 1, "split": 0.75, "left": 1, "right": 2, "missing": "right"},
                      {"leaf": -0.5}, {"leaf": 1.25}],
                     [{"leaf": 0.1}]],
           "combine": "mean", "output": "sigmoid", "ts": T0 + 172}),
        V("tree_ensemble_sum_raw", "the defaults written out: sum of the leaves, raw score",
          {"v": 1, "model_id": "stump", "revision": 3, "kind": "tree_ensemble",
           "params": {"threshold": 1.0},
           "features": ["mem"],
           "trees": [[{"feature": 0, "split": 90.0, "left": 1, "right": 2},
                      {"leaf": 0.0}, {"leaf": 1.0}]],
           "combine": "sum", "output": "raw", "ts": T0 + 173}),
    ],
    "ack": [
        V("single_stream", "one watermark",
          {"v": 1, "node": "gw-par-01", "ts": T0 + 180, "watermarks": {"metrics": 1}}),
        V("several_streams_big_seq", "four streams, one watermark above 2^32",
          {"v": 1, "node": "gw-par-01", "ts": T0 + 190,
           "watermarks": {"alerts": 3, "decisions": 17, "metrics": 4294967297,
                          "results": 250}}),
    ],
    "update_offer": [
        V("agent_2_0_0", "an offer of agent 2.0.0, a bundle of 1.8 MB",
          {"v": 1, "version": "2.0.0", "size": 1843200, "ts": T0 + 200,
           "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}),
        V("long_version", "a version with a build suffix; the smallest bundle",
          {"v": 1, "version": "2.1.0-rc.1+g1a2b3c4", "size": 1, "ts": T0 + 210,
           "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}),
    ],
    "workload_spec": [
        V("full", "every optional member; non-ASCII name",
          {"v": 1, "workload_id": "wl-anomaly", "name": "Détection d'anomalies 🚀",
           "argv": ["/opt/nova/bin/anomaly", "--window", "60"],
           "res": {"cpu_millis": 500, "memory_mb": 256, "storage_mb": 1024},
           "latency": {"max_ms": 20, "to": "thermo-7"},
           "caps": ["gpu"], "tiers": [4, 3], "region": "eu-west",
           "availability": 0.999, "clusters_in": ["edge-eu"],
           "clusters_out": ["edge-us", "edge-ap"], "timeout_ms": 60000}),
        V("minimal", "no optional member; availability 0.99 (double only)",
          {"v": 1, "workload_id": "wl-echo", "name": "echo", "argv": ["echo", "hi"],
           "res": {"cpu_millis": 0, "memory_mb": 0, "storage_mb": 0},
           "availability": 0.99, "timeout_ms": 1}),
        V("service_replicas", "a service of 3 replicas, restarted on failure, with a full health check",
          {"v": 1, "workload_id": "web", "name": "web", "argv": ["/usr/bin/nginx"],
           "res": {"cpu_millis": 100, "memory_mb": 64, "storage_mb": 0},
           "availability": 0.99, "timeout_ms": 604800000, "kind": "service", "replicas": 3,
           "restart_policy": "on-failure",
           "health_check": {"command": ["/usr/bin/curl", "-fs", "http://127.0.0.1/"],
                            "interval_s": 5, "timeout_s": 2, "failure_threshold": 4,
                            "initial_delay_s": 10}}),
        V("service_defaults", "a service with one replica, the default restart policy and a "
          "health check of defaults",
          {"v": 1, "workload_id": "db", "name": "db", "argv": ["/usr/bin/redis-server"],
           "res": {"cpu_millis": 0, "memory_mb": 0, "storage_mb": 0},
           "availability": 0.99, "timeout_ms": 60000, "kind": "service",
           "health_check": {"command": ["/usr/bin/redis-cli", "ping"]}}),
    ],
    "placement": [
        V("with_failover", "a placement with failover candidates",
          {"v": 1, "workload_id": "wl-anomaly", "node": "gw-par-01",
           "site": "cloud/eu/par/acc-01", "score": 86.75,
           "breakdown": {"resource": 90.0, "latency": 100.0, "capability": 100.0,
                         "level": 50.0, "availability": 75.0},
           "revision": 12, "ts": T0 + 200, "failover": ["gw-par-02", "metro-par"]}),
        V("without_failover", "no failover (omitted when empty); zero scores",
          {"v": 1, "workload_id": "wl-echo", "node": "cloud-1", "site": "cloud",
           "score": 0.0,
           "breakdown": {"resource": 0.0, "latency": 0.0, "capability": 0.0,
                         "level": 0.0, "availability": 0.0},
           "revision": 1, "ts": T0 + 210}),
    ],
    "cluster_record": [
        V("local_primary", "a local cluster: root_site, caps, policies, region",
          {"v": 1, "cluster_id": "edge-eu", "name": "Edge Europe — Paris",
           "role": "primary", "root_site": "cloud/eu",
           "caps": ["edge_computing", "gpu"],
           "policies": {"data_residency": "eu", "max_latency_ms": "50"},
           "region": "eu-west"}),
        V("external_secondary", "an external cluster: endpoint only",
          {"v": 1, "cluster_id": "edge-us", "name": "Edge US", "role": "secondary",
           "endpoint": "https://edge-us.example.net:8443/api"}),
    ],
}


# --------------------------------------------------------------------------------------


def build():
    """Returns {file name: text}, after checking every vector."""
    schema = cddl_check.Schema(*sorted(CDDL_DIR.glob("*.cddl")), strict_floats=True)
    files = {}
    for type_name, (root, cddl_file, rule) in TYPES.items():
        vectors = VECTORS[type_name]
        if len(vectors) < 2:
            raise SystemExit(f"{type_name}: fewer than 2 vectors")
        seen = {}
        names = set()
        out = []
        for vec in vectors:
            if vec["name"] in names:
                raise SystemExit(f"{type_name}: duplicate vector name {vec['name']}")
            names.add(vec["name"])
            wire = vec["value"]
            error, observations = schema.validate(rule, wire)
            if error:
                raise SystemExit(f"{type_name}/{vec['name']}: CDDL {rule}: {error}")
            for label, key, present in observations:
                seen.setdefault((label, key), set()).add(present)
            raw = encode(wire)
            entry = {"name": vec["name"], "description": vec["description"],
                     "value": to_json_form(wire), "cbor": raw.hex()}
            if "inflated" in vec and wire["enc"] == "qdelta":
                cols = cbor2.loads(bytes.fromhex(vec["inflated"]["cbor"]))
                error, _ = schema.validate("metrics-qdelta-columns", cols)
                if error:
                    raise SystemExit(f"{type_name}/{vec['name']}: columns: {error}")
                samples = qdelta_decode(cols, wire["count"])
                plain = {k: v for k, v in wire.items() if k not in ("count", "data")}
                plain.update(enc="plain", samples=samples)
                error, _ = schema.validate("metrics-batch-plain", plain)
                if error or to_json_form(samples) != vec["inflated"]["samples"]:
                    raise SystemExit(f"{type_name}/{vec['name']}: inflated: {error}")
                entry["inflated"] = vec["inflated"]
            elif "inflated" in vec:
                samples = cbor2.loads(bytes.fromhex(vec["inflated"]["cbor"]))
                plain = {k: v for k, v in wire.items() if k not in ("count", "data")}
                plain.update(enc="plain", samples=samples)
                error, _ = schema.validate("metrics-batch-plain", plain)
                if error or len(samples) != wire["count"]:
                    raise SystemExit(f"{type_name}/{vec['name']}: inflated: {error}")
                entry["inflated"] = vec["inflated"]
            out.append(entry)
        for (label, key), states in sorted(seen.items()):
            if states != {True, False}:
                state = "present" if True in states else "absent"
                raise SystemExit(f"{type_name}: optional {label}.{key} is always {state}")
        doc = {"type": type_name, "root": root, "cddl": {"file": cddl_file, "rule": rule},
               "vectors": out}
        files[f"{type_name}.json"] = json.dumps(doc, indent=2, ensure_ascii=False,
                                                allow_nan=False) + "\n"
    return files


# --------------------------------------------------------------------------------------
# Signed envelopes (cddl/signed.cddl): COSE_Sign1 with EdDSA, made with a fixed test key

SIGNING_SEED = bytes([0x4E]) * 32  # the test key of tests/harness (signer.h)
COSE_PROTECTED = bytes([0xA1, 0x01, 0x27])  # {1: -8}: alg EdDSA

SIGNED_VECTORS = [
    ("task", "a task for node dev-1 at cloud/eu/par/acc-01, valid for 10 minutes",
     {"node": "dev-1", "site": "cloud/eu/par/acc-01", "kind": "task",
      "mid": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "iat": T0, "exp": T0 + 600000},
     {"v": 1, "task_id": "t-42", "argv": ["/usr/bin/uptime"], "timeout_ms": 10000,
      "memory_mb": 0, "cpu_millis": 0, "priority": 5, "issued_ts": T0}),
    ("ack", "an end-to-end ack, valid for a day",
     {"node": "dev-1", "site": "cloud/eu/par/acc-01", "kind": "ack",
      "mid": "00000000000000000000000000000001", "iat": T0, "exp": T0 + 86400000},
     {"v": 1, "node": "dev-1", "ts": T0, "watermarks": {"metrics": 17}}),
    ("cancel", "a task cancel for node dev-1, valid for 10 minutes",
     {"node": "dev-1", "site": "cloud/eu/par/acc-01", "kind": "cancel",
      "mid": "0f1e2d3c4b5a69788796a5b4c3d2e1f1", "iat": T0, "exp": T0 + 600000},
     {"v": 1, "task_id": "t-42", "reason": "operator", "issued_ts": T0}),
    ("config", "a retained config",
     {"node": "gw-7", "site": "cloud/eu", "kind": "config",
      "mid": "cfg-2024-11-26", "iat": T0, "exp": T0 + 30 * 86400000},
     {"v": 1, "revision": 3, "ts": T0, "values": {"drain.rate_per_s": 25}}),
]


# A down topic kind whose CDDL rule has another name.
SIGNED_RULES = {"verdict": "decision-verdict", "cancel": "task-cancel"}


def build_signed():
    schema = cddl_check.Schema(*sorted(CDDL_DIR.glob("*.cddl")), strict_floats=True)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization

    key = Ed25519PrivateKey.from_private_bytes(SIGNING_SEED)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    out = []
    for name, description, claims, message in SIGNED_VECTORS:
        msg = encode(message)
        payload_map = dict(claims, v=1, msg=msg)
        error, _ = schema.validate("signed-claims", payload_map)
        if error:
            raise SystemExit(f"signed/{name}: claims: {error}")
        error, _ = schema.validate(SIGNED_RULES.get(claims["kind"], claims["kind"]), message)
        if error:
            raise SystemExit(f"signed/{name}: message: {error}")
        payload = encode(payload_map)
        sig_structure = encode(["Signature1", COSE_PROTECTED, b"", payload])
        signature = key.sign(sig_structure)
        key.public_key().verify(signature, sig_structure)
        array = encode([COSE_PROTECTED, {}, payload, signature])
        error, _ = schema.validate("cose-sign1", [COSE_PROTECTED, {}, payload, signature])
        if error:
            raise SystemExit(f"signed/{name}: envelope: {error}")
        cose = bytes([0xD2]) + array  # tag 18
        decoded = cbor2.loads(cose)
        if not (isinstance(decoded, cbor2.CBORTag) and decoded.tag == 18 and decoded.value[2] == payload):
            raise SystemExit(f"signed/{name}: cbor2 does not read the COSE_Sign1 back")
        out.append({"name": name, "description": description, "claims": claims, "message": message,
                    "message_cbor": msg.hex(), "payload": payload.hex(),
                    "sig_structure": sig_structure.hex(), "signature": signature.hex(),
                    "cose": cose.hex()})
    doc = {"key": {"seed": SIGNING_SEED.hex(), "public": public.hex()}, "vectors": out}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv):
    check = "--check" in argv[1:]
    files = build()
    files["signed/signed.json"] = build_signed()
    stale = []
    for name, text in files.items():
        path = HERE / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    count = sum(len(v) for v in VECTORS.values())
    if check:
        if stale:
            print(f"out of date: {', '.join(stale)} (run generate.py)")
            return 1
        print(f"{len(files)} vector files up to date, {count} vectors")
        return 0
    print(f"wrote {len(files)} vector files, {count} vectors, to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
