#!/usr/bin/env python3
"""Report of bench/agent_vs_collectd.sh: reads the run's temp dir and prints the figures.

usage: agent_vs_collectd_report.py <run dir>

The run dir holds what the driver captured: meta.env, <peer>.t0 (exec time),
<peer>.msgs (every message of the peer's topics at the broker, as mosquitto_sub -F
'%U %r %l %t %x' printed it), timeline.txt (RSS/CPU every few seconds) and the peers'
/proc files at the end of the window (status, stat, smaps, smaps_rollup, io).
"""
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from collections import Counter, defaultdict

PEERS = ("agent", "collectd")
LABEL = {"agent": "nova-agent", "collectd": "collectd", "agent_tls": "nova-agent, TLS",
         "agent_tls_key": "nova-agent, TLS + signing key"}
# The TLS agents of the same run (issue 10), measured like the others when present.
TLS_PEERS = ("agent_tls", "agent_tls_key")

# Issue 4's targets, and the seed's. "MB" and "KB" are read as powers of 1000 (the
# stricter reading); /proc reports kB = KiB.
TARGET_RSS_BYTES, SEED_RSS_BYTES = 8_000_000, 50_000_000
TARGET_CPU_PCT, SEED_CPU_PCT = 0.1, 1.0
TARGET_STARTUP_MS, SEED_STARTUP_MS = 200.0, 10_000.0
TARGET_UPLINK_BPH, SEED_UPLINK_BPH = 300_000, 10_000_000


def read_meta(d):
    meta = {}
    with open(os.path.join(d, "meta.env")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    return meta


def read_kv(path):
    """/proc/<pid>/status or smaps_rollup: 'Key:  value [kB]' -> {Key: int or str}."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                k, sep, v = line.partition(":")
                if not sep:
                    continue
                v = v.split()
                if v and v[0].isdigit():
                    out[k] = int(v[0])
                elif v:
                    out[k] = " ".join(v)
    except FileNotFoundError:
        pass
    return out


def stat_ticks(path):
    with open(path) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


def read_msgs(path):
    """[(t, retained, length, topic, payload bytes)] of non-probe messages."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split(" ")
            if len(parts) < 4:
                continue  # a line cut by the subscriber's stop
            t, r, n, topic = parts[:4]
            if topic.startswith("bench/probe/"):
                continue
            hexpayload = parts[4] if len(parts) > 4 else ""
            try:
                payload = bytes.fromhex(hexpayload)
            except ValueError:
                continue
            out.append((float(t), r == "1", int(n), topic, payload))
    return out


def varint_len(n):
    size = 1
    while n >= 128:
        n //= 128
        size += 1
    return size


def publish_packet_bytes(topic, payload_len, qos=1):
    """Size of the MQTT 3.1.1 PUBLISH packet carrying it (fixed header included)."""
    remaining = 2 + len(topic.encode()) + (2 if qos > 0 else 0) + payload_len
    return 1 + varint_len(remaining) + remaining


def cbor_decode(b, i=0, float_widths=None):
    """Minimal CBOR decoder (definite lengths), enough for metrics batches and their
    samples; counts the encoded width of each float in float_widths if given."""
    ib = b[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if major == 7 and info in (25, 26, 27):
        n = 1 << (info - 24)
        if float_widths is not None:
            float_widths[n] += 1
        fmt = {2: ">e", 4: ">f", 8: ">d"}[n]
        return struct.unpack(fmt, bytes(b[i:i + n]))[0], i + n
    if info < 24:
        val = info
    elif info in (24, 25, 26, 27):
        n = 1 << (info - 24)
        val = int.from_bytes(b[i:i + n], "big")
        i += n
    else:
        raise ValueError("indefinite lengths are not expected")
    if major == 0:
        return val, i
    if major == 1:
        return -1 - val, i
    if major == 2:
        return bytes(b[i:i + val]), i + val
    if major == 3:
        return b[i:i + val].decode("utf-8", "replace"), i + val
    if major == 4:
        items = []
        for _ in range(val):
            x, i = cbor_decode(b, i, float_widths)
            items.append(x)
        return items, i
    if major == 5:
        m = {}
        for _ in range(val):
            k, i = cbor_decode(b, i, float_widths)
            v, i = cbor_decode(b, i, float_widths)
            m[k] = v
        return m, i
    if major == 6:
        return cbor_decode(b, i, float_widths)
    if major == 7:
        if info == 20:
            return False, i
        if info == 21:
            return True, i
        if info in (22, 23):
            return None, i
        return None, i
    raise ValueError("bad CBOR")


def smaps_breakdown(path, exe):
    """RSS / PSS / private kB by kind of mapping."""
    cats = defaultdict(lambda: Counter())
    libs = defaultdict(lambda: Counter())
    current = None
    try:
        f = open(path)
    except FileNotFoundError:
        return cats, libs
    with f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                parts = line.split(None, 5)
                name = parts[5].strip() if len(parts) > 5 else ""
                if name == exe or (exe and name.endswith(" (deleted)") and name.startswith(exe)):
                    current = ("program binary", None)
                elif name.startswith("/usr/lib/collectd/"):
                    current = ("collectd plugins", os.path.basename(name))
                elif ".so" in os.path.basename(name):
                    current = ("shared libraries", os.path.basename(name))
                elif name == "[heap]":
                    current = ("heap (brk)", None)
                elif name == "":
                    current = ("anonymous mmap (malloc arenas, thread stacks)", None)
                elif name == "[stack]":
                    current = ("main thread stack", None)
                elif name.startswith("["):
                    current = ("kernel ([vdso], [vvar])", None)
                else:
                    current = ("other mapped files", os.path.basename(name))
                continue
            key = first.rstrip(":")
            if current is None or key not in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                continue
            v = int(line.split()[1])
            k = "Private" if key.startswith("Private") else key
            cats[current[0]][k] += v
            if current[1]:
                libs[current[1]][k] += v
    return cats, libs


def decode_first_batch(agent):
    """Samples of the first batch: its zstd data decompressed by the zstd command (None
    without it) and decoded, with the encoded size of each float ({2, 4, 8}: count)."""
    if not agent.get("batch_first"):
        return None
    t = agent["batch_first"][0][0]
    payload = next((m[4] for m in agent["window"] if m[0] == t and m[3].endswith("/metrics")), None)
    if payload is None:
        return None
    try:
        doc, _ = cbor_decode(payload)
        data = doc["data"] if doc.get("enc") in ("zstd", "qdelta") else None
        if data is None:
            return None
        plain = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True, timeout=30, check=True).stdout
        widths = Counter()
        body, _ = cbor_decode(plain, 0, widths)
        if doc["enc"] == "qdelta":
            # Columns, not samples: one sample's shape is the column names (values are
            # integer steps, so there are no floats to count).
            shape = {k: 0 for k in body if k != "extra"}
            if body.get("extra"):
                shape["extra"] = {k: 0 for k in body["extra"]}
            return {"samples": [shape] * doc["count"], "plain_bytes": len(plain), "float_widths": widths,
                    "enc": "qdelta"}
        return {"samples": body, "plain_bytes": len(plain), "float_widths": widths, "enc": "zstd"}
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError, TypeError):
        return None


def fmt_int(x):
    return "-" if x is None else f"{x:,.0f}"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def verdict(value, target, seed, lower_is_better=True):
    if value is None:
        return "no data"
    if value <= target:
        return "met"
    return "MISSED" + (" (seed met)" if value <= seed else " (seed MISSED too)")


def main():
    d = sys.argv[1]
    meta = read_meta(d)
    clk = int(meta["clk_tck"])
    t_end = float(meta["t_end"])
    batch_s = int(meta.get("agent_batch_interval_s", "60"))
    warmup = 10.0

    tls_peers = tuple(p for p in TLS_PEERS if os.path.exists(os.path.join(d, f"{p}.t0")))
    measured = PEERS + tls_peers
    t0 = {}
    for p in measured:
        with open(os.path.join(d, f"{p}.t0")) as f:
            t0[p] = float(f.read().strip())

    timeline = defaultdict(list)  # peer -> [(t, rss, hwm, ticks, ctx, threads)]
    tl_path = os.path.join(d, "timeline.txt")
    if os.path.exists(tl_path):
        with open(tl_path) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 7:
                    continue
                t, name, rss, hwm, ticks, ctx, thr = parts
                timeline[name].append((float(t), int(rss), int(hwm), int(ticks), int(ctx), int(thr)))

    r = {p: {} for p in measured}
    for p in measured:
        x = r[p]
        status = read_kv(os.path.join(d, f"{p}.status.end"))
        rollup = read_kv(os.path.join(d, f"{p}.smaps_rollup.end"))
        io = read_kv(os.path.join(d, f"{p}.io.end"))
        x["rss"] = status.get("VmRSS")
        x["hwm"] = status.get("VmHWM")
        x["rss_anon"] = status.get("RssAnon")
        x["rss_file"] = status.get("RssFile")
        x["threads"] = status.get("Threads")
        x["pss"] = rollup.get("Pss")
        x["private"] = (rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)) if rollup else None
        x["wchar"] = io.get("wchar")
        x["write_bytes"] = io.get("write_bytes")
        x["elapsed"] = t_end - t0[p]
        ticks_end = stat_ticks(os.path.join(d, f"{p}.stat.end"))
        x["cpu_s"] = ticks_end / clk
        x["cpu_pct"] = 100.0 * x["cpu_s"] / x["elapsed"]
        tl = timeline.get(p, [])
        after = [s for s in tl if s[0] >= t0[p] + warmup]
        if after:
            s0 = after[0]
            x["cpu_pct_steady"] = 100.0 * (ticks_end - s0[3]) / clk / (t_end - s0[0])
            x["steady_from"] = s0[0] - t0[p]
        else:
            x["cpu_pct_steady"] = None
        if len(tl) >= 2:
            x["ctx_per_s"] = (tl[-1][4] - tl[0][4]) / (tl[-1][0] - tl[0][0])
            x["rss_first"] = (tl[0][0] - t0[p], tl[0][1])
            x["rss_last"] = (tl[-1][0] - t0[p], tl[-1][1])
        x["timeline"] = tl

        msgs = read_msgs(os.path.join(d, f"{p}.msgs"))
        x["first"] = None
        for m in msgs:
            if m[0] >= t0[p]:
                x["first"] = m
                break
        x["startup_ms"] = (x["first"][0] - t0[p]) * 1000.0 if x["first"] else None
        # Every start: the extra ones before the run, then the run's own.
        starts = []
        for i in range(1, int(meta.get("startups", "0")) + 1):
            try:
                with open(os.path.join(d, f"{p}.start{i}.t0")) as f:
                    starts.append(float(f.read().strip()))
            except (FileNotFoundError, ValueError):
                pass
        starts.append(t0[p])
        times = []
        for k, s0 in enumerate(starts):
            s1 = starts[k + 1] if k + 1 < len(starts) else float("inf")
            first = next((m for m in msgs if s0 <= m[0] < s1), None)
            times.append((first[0] - s0) * 1000.0 if first else None)
        x["startups"] = times
        valid = [v for v in times if v is not None]
        x["startup_median"] = statistics.median(valid) if valid else None
        x["startup_max"] = max(valid) if valid else None
        window = [m for m in msgs if t0[p] <= m[0] <= t_end]
        x["window"] = window
        x["after_window"] = [m for m in msgs if m[0] > t_end]
        x["msgs"] = len(window)
        x["payload"] = sum(m[2] for m in window)
        x["packets"] = sum(publish_packet_bytes(m[3], m[2]) for m in window)
        seen = set()
        uniq = []
        for m in window:
            key = (m[3], m[4])
            if key not in seen:
                seen.add(key)
                uniq.append(m)
        x["uniq"] = uniq
        x["uniq_msgs"] = len(uniq)
        x["uniq_payload"] = sum(m[2] for m in uniq)
        x["uniq_packets"] = sum(publish_packet_bytes(m[3], m[2]) for m in uniq)
        hours = x["elapsed"] / 3600.0
        x["payload_ph"] = x["payload"] / hours
        x["msgs_ph"] = x["msgs"] / hours
        x["packets_ph"] = x["packets"] / hours
        x["uniq_payload_ph"] = x["uniq_payload"] / hours
        x["uniq_msgs_ph"] = x["uniq_msgs"] / hours
        x["uniq_packets_ph"] = x["uniq_packets"] / hours
        x["topics"] = Counter(m[3] for m in window)

    # nova-agent: decode the batches (position, sample count) to tell first sends from
    # go-back-N resends, and extrapolate an hour from whole batches.
    a = r["agent"]
    batches = []
    for m in a["window"]:
        if not m[3].endswith("/metrics"):
            continue
        try:
            doc, _ = cbor_decode(m[4])
        except (ValueError, IndexError):
            continue
        if isinstance(doc, dict):
            batches.append((m[0], doc.get("seq"), doc.get("count") or len(doc.get("samples", []) or []),
                            m[2], doc.get("enc"), len(doc.get("data", b"") or b"")))
    a["batches"] = batches
    first_send = {}
    for b in batches:
        first_send.setdefault(b[1], b)
    a["batch_first"] = sorted(first_send.values(), key=lambda b: b[1] or 0)
    a["batch_resends"] = len(batches) - len(first_send)
    state_uniq = [m for m in a["uniq"] if m[3].endswith("/state")]
    if a["batch_first"]:
        mean_batch = statistics.mean(b[3] for b in a["batch_first"])
        mean_batch_pkt = statistics.mean(
            publish_packet_bytes("nova/v1/up/bench-agent/metrics", b[3]) for b in a["batch_first"])
        per_hour = 3600.0 / batch_s
        a["extrap_payload_ph"] = mean_batch * per_hour + sum(m[2] for m in state_uniq)
        a["extrap_packets_ph"] = mean_batch_pkt * per_hour + sum(
            publish_packet_bytes(m[3], m[2]) for m in state_uniq)
        a["extrap_msgs_ph"] = per_hour + len(state_uniq)
        a["samples_per_batch"] = statistics.mean(b[2] for b in a["batch_first"])
        a["mean_batch"] = mean_batch
    else:
        a["extrap_payload_ph"] = a["extrap_packets_ph"] = a["extrap_msgs_ph"] = None

    # Local decisions (docs/agent.md): alerts and decision records first sent in the
    # window (a resend repeats its payload), per hour. They are part of the uplink.
    hours_a = a["elapsed"] / 3600.0
    for kind in ("alert", "decision"):
        sent = [m for m in a["uniq"] if m[3].endswith("/" + kind)]
        a[kind + "s_n"] = len(sent)
        a[kind + "s_ph"] = len(sent) / hours_a if hours_a > 0 else None
        a[kind + "s_bytes_ph"] = sum(m[2] for m in sent) / hours_a if hours_a > 0 else None
    if a["extrap_payload_ph"] is not None and a["alerts_bytes_ph"] is not None:
        decided = a["alerts_bytes_ph"] + a["decisions_bytes_ph"]
        a["extrap_payload_ph"] += decided
        a["extrap_packets_ph"] += sum(
            publish_packet_bytes(m[3], m[2]) for m in a["uniq"] if m[3].endswith(("/alert", "/decision"))) / hours_a
        a["extrap_msgs_ph"] += a["alerts_ph"] + a["decisions_ph"]

    c = r["collectd"]
    c_values_per_s = c["msgs"] / c["elapsed"] if c["elapsed"] > 0 else 0
    # The uplink figure judged against the target: for nova-agent, what an hour of
    # acknowledged operation sends (whole batches, first sends); for collectd, the window.
    uplink = {"agent": a["extrap_payload_ph"], "collectd": c["payload_ph"]}
    uplink_pkt = {"agent": a["extrap_packets_ph"], "collectd": c["packets_ph"]}

    # ------------------------------------------------------------------ print
    out = []
    w = out.append
    w(f"agent_vs_collectd  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t_end))}  "
      f"{meta['nproc']} CPUs ({meta.get('cpu_model', '?')}), "
      f"{int(meta['mem_total_kb']) / 1048576:.1f} GiB, {meta['kernel']}")
    w(f"load average: {meta['loadavg_start']} at start, {meta['loadavg_end']} at end")
    w(f"{meta['agent_version']} ({meta['agent_bin']}), {meta['collectd_version']}, "
      f"mosquitto {meta['mosquitto_version']} on 127.0.0.1:{meta['port']}")
    if meta.get("agent_extra"):
        w(f"plain nova-agent's config adds: {meta['agent_extra']}")
    w(f"side by side for {meta['seconds']} s after both started: nova-agent ran {a['elapsed']:.1f} s, "
      f"collectd {c['elapsed']:.1f} s (each from its exec to the end of the window)")
    w("")
    hdr = f"{'':44} {'nova-agent':>12} {'collectd':>12} {'ratio':>7}   {'target (seed)':<22} nova-agent"
    w(hdr)

    def row(label, av, cv, fmt=fmt_int, target="", verdict_text=""):
        w(f"{label:44} {fmt(av):>12} {fmt(cv):>12} {fmt_ratio(av, cv):>7}   {target:<22} {verdict_text}")

    f1 = lambda v: "-" if v is None else f"{v:.1f}"
    f3 = lambda v: "-" if v is None else f"{v:.3f}"
    row("RSS at end, VmRSS (kB)", a["rss"], c["rss"], target="<= 8 MB (< 50 MB)",
        verdict_text=verdict(a["rss"] * 1024 if a["rss"] is not None else None, TARGET_RSS_BYTES, SEED_RSS_BYTES))
    row("  peak, VmHWM (kB)", a["hwm"], c["hwm"])
    row("  anonymous, RssAnon (kB)", a["rss_anon"], c["rss_anon"])
    row("  file-backed, RssFile (kB)", a["rss_file"], c["rss_file"])
    row("  PSS, shared pages divided (kB)", a["pss"], c["pss"])
    row("  private pages (kB)", a["private"], c["private"])
    row("CPU, % of one core, exec to end", a["cpu_pct"], c["cpu_pct"], fmt=f3,
        target="<= 0.1 % (< 1 %)",
        verdict_text=verdict(a["cpu_pct"], TARGET_CPU_PCT, SEED_CPU_PCT))
    row(f"  after the first {warmup:.0f} s", a["cpu_pct_steady"], c["cpu_pct_steady"], fmt=f3)
    row("  CPU time (s)", a["cpu_s"], c["cpu_s"], fmt=lambda v: f"{v:.2f}")
    row("  context switches / s, all threads", a.get("ctx_per_s"), c.get("ctx_per_s"), fmt=f1)
    row("  threads", a["threads"], c["threads"])
    n_starts = len(a["startups"])
    row(f"startup, exec -> first record (ms), median of {n_starts}", a["startup_median"], c["startup_median"],
        fmt=f1, target="<= 200 ms (< 10 s)",
        verdict_text=verdict(a["startup_median"], TARGET_STARTUP_MS, SEED_STARTUP_MS))
    row(f"  slowest of the {n_starts}", a["startup_max"], c["startup_max"], fmt=f1,
        verdict_text=verdict(a["startup_max"], TARGET_STARTUP_MS, SEED_STARTUP_MS))
    row("  the run's own start", a["startup_ms"], c["startup_ms"], fmt=f1)
    row("uplink payload bytes / h (a)", uplink["agent"], uplink["collectd"],
        target="<= 300 KB/h (< 10 MB/h)",
        verdict_text=verdict(uplink["agent"], TARGET_UPLINK_BPH, SEED_UPLINK_BPH))
    row("  messages / h", a["extrap_msgs_ph"], c["msgs_ph"])
    row("  MQTT PUBLISH bytes / h (topic, header)", uplink_pkt["agent"], uplink_pkt["collectd"],
        verdict_text=verdict(uplink_pkt["agent"], TARGET_UPLINK_BPH, SEED_UPLINK_BPH))
    row("  as sent in this run (b): payload bytes / h", a["payload_ph"], c["payload_ph"],
        verdict_text=verdict(a["payload_ph"], TARGET_UPLINK_BPH, SEED_UPLINK_BPH))
    row("    messages / h", a["msgs_ph"], c["msgs_ph"])
    row("  in the window: payload bytes", a["payload"], c["payload"])
    row("    messages", a["msgs"], c["msgs"])
    row(f"alerts / h (a; {a['alerts_n']} in the window)", a["alerts_ph"], None, fmt=f1,
        target="<= 1 / day (0.042 / h)")
    row(f"  decision records / h ({a['decisions_n']} in the window)", a["decisions_ph"], None, fmt=f1)
    row("  their payload bytes / h", (a["alerts_bytes_ph"] or 0) + (a["decisions_bytes_ph"] or 0), None)
    if tls_peers:
        ts = [r[p] for p in tls_peers]
        w("")
        w(f"TLS, same window: nova-agent over mqtts:// with a client certificate (EC P-256) on a listener requiring "
          f"one (127.0.0.1:{meta.get('tls_port', '?')}); ran {ts[0]['elapsed']:.1f} s")
        if "agent_tls_key" in tls_peers:
            w("  'TLS + key' also checks control messages with an Ed25519 signing key (trust.signing_keys); the plain "
              "and 'TLS' agents run with trust.insecure_unsigned")
        heads = {"agent_tls": "TLS", "agent_tls_key": "TLS + key"}
        w(f"{'':44} {'plain':>12} " + " ".join(f"{heads[p]:>12}" for p in tls_peers) + f"   {'target':<22} verdict")

        def trow(label, key, fmt=fmt_int, target="", judge=False):
            vals = " ".join(f"{fmt(t[key]):>12}" for t in ts)
            verdicts = ""
            if judge:
                verdicts = ", ".join(f"{heads[p]}: " + verdict(r[p][key] * 1024 if r[p][key] is not None else None,
                                                                TARGET_RSS_BYTES, SEED_RSS_BYTES) for p in tls_peers)
            w(f"{label:44} {fmt(a[key]):>12} {vals}   {target:<22} {verdicts}")

        trow("RSS at end, VmRSS (kB)", "rss", target="<= 8 MB (issue 10)", judge=True)
        trow("  peak, VmHWM (kB)", "hwm")
        trow("  anonymous, RssAnon (kB)", "rss_anon")
        trow("  file-backed, RssFile (kB)", "rss_file")
        trow("  PSS, shared pages divided (kB)", "pss")
        trow("  private pages (kB)", "private")
        trow("CPU, % of one core, exec to end", "cpu_pct", fmt=f3)
        trow(f"  after the first {warmup:.0f} s", "cpu_pct_steady", fmt=f3)
        trow("  threads", "threads")
        trow("startup, the run's own start (ms)", "startup_ms", fmt=f1)
        trow("  messages in the window", "msgs")
    w("")
    w(f"(a) nova-agent: an hour of acknowledged operation, {3600 // batch_s} whole batches (mean of the first sends "
      "in the window) plus the birth record;")
    w("    collectd: what reached the broker in the window, scaled to an hour (it sends every value once).")
    w("(b) everything that reached the broker in the window, scaled to an hour; for nova-agent this includes "
      "the resends")
    w("    of unacknowledged batches (no acking consumer in this run) and only the batches completed in the window.")

    w("")
    w("STARTUP: exec to the first record at the broker, each start (ms; the last is the run's), and that record")
    for p in PEERS:
        x = r[p]
        w(f"  {LABEL[p]:10} " + "  ".join("-" if v is None else f"{v:.1f}" for v in x["startups"]))
    for p in PEERS:
        x = r[p]
        if x["first"]:
            t, ret, n, topic, _ = x["first"]
            w(f"  {LABEL[p]:10} first record: {topic} ({n} bytes)")
        else:
            w(f"  {LABEL[p]:10} no record within the run")
    if int(meta.get("startups", "0")) > 0:
        w("  the extra starts stop each peer once its first record is in; nova-agent gets a fresh state dir each time,")
        w("  and from the second start on the broker still holds its session (client id bench-agent, clean session off).")
    w("  nova-agent's first record is its retained birth (NodeState, online) sent on connect, before")
    w("  any sample; collectd's is the first value list of its first read cycle (GAUGEs such as")
    w("  memory; rates like cpu need two reads). nova-agent's first metrics batch comes after "
      f"{batch_s} s:")
    if a["batch_first"]:
        w(f"  first batch (seq {a['batch_first'][0][1]}) at {a['batch_first'][0][0] - t0['agent']:.1f} s after exec.")

    w("")
    w("UPLINK DETAIL")
    if a["batch_first"]:
        sizes = [b[3] for b in a["batch_first"]]
        w(f"  nova-agent: {len(a['batch_first'])} batches in the window (seq "
          f"{a['batch_first'][0][1]}..{a['batch_first'][-1][1]}), {a['samples_per_batch']:.1f} samples each "
          f"(1 per {batch_s / a['samples_per_batch']:.2f} s), payload {min(sizes)}..{max(sizes)} bytes, "
          f"mean {a['mean_batch']:.0f} = {a['mean_batch'] / a['samples_per_batch']:.1f} bytes/sample, "
          f"enc {a['batch_first'][0][4]}")
    if a["batch_first"]:
        w("    batch payload bytes by seq: " + ", ".join(f"{b[1]}: {b[3]}" for b in a["batch_first"]))
    decoded = decode_first_batch(a)
    if decoded and decoded["samples"]:
        sample = decoded["samples"][0]
        extra = sample.get("extra") or {}
        core = [k for k in sample if k not in ("ts", "extra")]
        n = len(decoded["samples"])
        fw = decoded["float_widths"]
        w(f"    a sample holds {len(core) + len(extra)} values: {', '.join(core)} and {len(extra)} extra gauges"
          + (f" ({', '.join(sorted(extra)[:10])}{', ...' if len(extra) > 10 else ''})" if extra else ""))
        what = "CBOR columns of quantized deltas" if decoded["enc"] == "qdelta" else "CBOR"
        w(f"    batch seq {a['batch_first'][0][1]} decoded: {decoded['plain_bytes']} bytes of {what} before zstd "
          f"({decoded['plain_bytes'] / n:.0f} bytes/sample), zstd {a['batch_first'][0][5]} bytes "
          f"({decoded['plain_bytes'] / max(1, a['batch_first'][0][5]):.1f}x)"
          + ("; floats as encoded: " + ", ".join(f"{cnt} of {wd} bytes" for wd, cnt in sorted(fw.items()))
             if fw else ""))
    w(f"  nova-agent: {a['batch_resends']} of the {len(a['batches'])} batch messages were resends of a batch "
      "already sent (go-back-N to the ack watermark when acks make no progress; no consumer acks here)")
    if a["batches"]:
        w("    metrics messages, s after exec:seq  " +
          " ".join(f"{b[0] - t0['agent']:.0f}:{b[1]}" for b in a["batches"]))
    for topic, n in sorted(a["topics"].items()):
        w(f"    {topic}: {n} messages")
    if a["after_window"]:
        w(f"  nova-agent after the window (while stopping): " +
          ", ".join(f"{m[3].rsplit('/', 1)[-1]} {m[2]} B" for m in a["after_window"]))
    plugins = Counter()
    for t, n in c["topics"].items():
        plugins[t.split("/")[2].split("-")[0]] += n
    per_plugin = ", ".join(f"{k} {v / c['elapsed']:.1f}" for k, v in sorted(plugins.items()))
    w(f"  collectd: {len(c['topics'])} topics, {c_values_per_s:.1f} value lists/s "
      f"({per_plugin}), "
      f"payload mean {c['payload'] / max(1, c['msgs']):.1f} bytes (text 'time:value' and a NUL), "
      f"topic mean {statistics.mean(len(t) for t in c['topics']) if c['topics'] else 0:.1f} bytes")
    if c["msgs"] != c["uniq_msgs"]:
        w(f"  collectd: {c['msgs'] - c['uniq_msgs']} duplicate messages")

    w("")
    w("RSS BY MAPPING at the end (kB): Rss / Pss / Private")
    for p in PEERS + tls_peers:
        exe = "/usr/sbin/collectd" if p == "collectd" else os.path.realpath(meta["agent_bin"])
        cats, libs = smaps_breakdown(os.path.join(d, f"{p}.smaps.end"), exe)
        w(f"  {LABEL[p]}")
        for name, v in sorted(cats.items(), key=lambda kv: -kv[1]["Rss"]):
            w(f"    {name:48} {v['Rss']:6} / {v['Pss']:6} / {v['Private']:6}")
        top = sorted(libs.items(), key=lambda kv: -kv[1]["Rss"])[:8]
        for n, v in top:
            w(f"      {n:46} {v['Rss']:6} / {v['Pss']:6} / {v['Private']:6}")

    w("")
    w("RSS OVER THE RUN (VmRSS kB at seconds after exec)")
    for p in PEERS + tls_peers:
        tl = r[p]["timeline"]
        if not tl:
            continue
        step = max(1, len(tl) // 8)
        pts = tl[::step]
        if pts[-1] is not tl[-1]:
            pts.append(tl[-1])
        w(f"  {LABEL[p]:30} " + "  ".join(f"{s[0] - t0[p]:.0f}s:{s[1]}" for s in pts) + f"  end:{r[p]['rss']}")

    w("")
    w("WRITES over the run: bytes passed to write()/send() (files and sockets, /proc/<pid>/io wchar);")
    w("bytes that reached the block layer (write_bytes: files, LevelDB, logs)")
    for p in PEERS:
        x = r[p]
        w(f"  {LABEL[p]:10} write()/send() {fmt_int(x['wchar'])}, block layer {fmt_int(x['write_bytes'])}")
    w(f"  nova-agent's state dir (outbox, tasks, inbox) at the end: {fmt_int(int(meta.get('agent_state_bytes', 0)))} bytes, "
      f"outbox {fmt_int(int(meta.get('agent_outbox_bytes', 0)))} bytes; it only grows here: no consumer acks.")

    # Notes from the logs.
    notes = []
    try:
        with open(os.path.join(d, "collectd", "collectd.log"), errors="replace") as f:
            clog = f.read()
    except FileNotFoundError:
        clog = ""
    if not any("/thermal" in t or "thermal-" in t for t in c["topics"]):
        notes.append("collectd's thermal plugin loaded but published nothing: this machine has no thermal "
                     "zones (/sys/class/thermal has none, no /proc/acpi/thermal_zone).")
    for line in clog.splitlines():
        if "error" in line.lower() or "warn" in line.lower():
            notes.append("collectd log: " + line.strip())
    try:
        with open(os.path.join(d, "agent.log"), errors="replace") as f:
            alog = f.read().splitlines()
    except FileNotFoundError:
        alog = []
    for line in alog:
        if "event=alert " in line:
            i = line.find("metric=")
            notes.append("nova-agent alert: " + (line[i:i + 200] if i >= 0 else line[:200]))
        elif "event=started" in line:
            i = line.find("metrics=")
            notes.append("nova-agent " + (line[i:i + 300] if i >= 0 else line[:300]))
        elif "level=warning" in line or "level=error" in line:
            notes.append("nova-agent log: " + line[:300])
    if notes:
        w("")
        w("NOTES")
        for n in notes[:20]:
            w("  " + n)

    w("")
    summary = {
        "RSS": verdict(a["rss"] * 1024 if a["rss"] is not None else None, TARGET_RSS_BYTES, SEED_RSS_BYTES),
        "idle CPU": verdict(a["cpu_pct"], TARGET_CPU_PCT, SEED_CPU_PCT),
        "startup": verdict(a["startup_median"], TARGET_STARTUP_MS, SEED_STARTUP_MS)
        + ("" if a["startup_max"] is None or a["startup_max"] <= TARGET_STARTUP_MS
           else f" (median; slowest {a['startup_max']:.0f} ms)"),
        "uplink": verdict(uplink["agent"], TARGET_UPLINK_BPH, SEED_UPLINK_BPH),
    }
    w("SUMMARY (nova-agent against issue 4): " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    print("\n".join(line.rstrip() for line in out))


if __name__ == "__main__":
    main()
