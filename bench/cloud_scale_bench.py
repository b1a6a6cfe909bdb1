#!/usr/bin/env python3
"""The measuring half of bench/cloud_scale_bench.sh (which starts the hierarchy and
nova-cloud and passes their coordinates here): runs nova-sim phases against the access
brokers and prints what nova-cloud, its peer consumer and the brokers did.

Clocks: nova-sim reports Unix epoch milliseconds (its "born:" line), this script stamps
its observations with time.time(), so both are on the same wall clock of one machine.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

POLL_S = 0.05  # /metrics poll period: the resolution of every convergence figure
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"cloud_scale_bench: {msg}", file=sys.stderr, flush=True)


def now_ms():
    return time.time() * 1000.0


class Proc:
    """/proc figures of one process: RSS, high-water mark, CPU seconds."""

    def __init__(self, pid):
        self.pid = pid

    def status(self):
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024.0  # MiB
        return out

    def cpu_s(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


class Cloud:
    def __init__(self, port, pid):
        self.url = f"http://127.0.0.1:{port}"
        self.proc = Proc(pid)

    def metrics(self):
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def nodes(self, liveness):
        return int(self.metrics().get(f'nova_cloud_nodes{{liveness="{liveness}"}}', 0))

    def wait_nodes(self, liveness, count, timeout_s, on_poll=None):
        """Polls until at least `count` nodes have `liveness`; returns the epoch ms of
        the poll that saw it, or None on timeout."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            m = self.metrics()
            if on_poll:
                on_poll(m)
            if m.get(f'nova_cloud_nodes{{liveness="{liveness}"}}', 0) >= count:
                return now_ms()
            time.sleep(POLL_S)
        return None


class Peer:
    """mosquitto_sub at the cloud broker, as a cloud service would subscribe, counting
    the distinct nodes of one prefix whose state record arrived."""

    def __init__(self, cloud_port, prefix, count, log_file):
        self.prefix = f"nova/v1/up/{prefix}-"
        self.count = count
        self.seen = set()
        self.done_ms = None
        self.client_id = f"bench-peer-{prefix}"
        # stdbuf: one line per message as it arrives, not a block of them at exit.
        self.p = subprocess.Popen(
            ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(cloud_port), "-V", "mqttv311",
             "-u", "nova-cloud", "-i", self.client_id, "-q", "1", "-t", "nova/v1/up/+/state", "-F", "%t"],
            stdout=subprocess.PIPE, stderr=open(log_file, "w"), text=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            topic = line.strip()
            if topic.startswith(self.prefix) and topic not in self.seen:
                self.seen.add(topic)
                if len(self.seen) == self.count:
                    self.done_ms = now_ms()

    def stop(self):
        self.p.terminate()
        self.p.wait()


class Sim:
    """nova-sim with its stdout parsed ("born: k=v ...", "summary: k=v ...")."""

    def __init__(self, argv, log_file):
        self.born = None
        self.summary = None
        self.born_event = threading.Event()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(log_file, "w"), text=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    @staticmethod
    def _fields(rest):
        return {k: int(v) for k, v in (kv.split("=") for kv in rest.split())}

    def _read(self):
        for line in self.p.stdout:
            kind, _, rest = line.partition(": ")
            if kind == "born":
                self.born = self._fields(rest)
                self.born_event.set()
            elif kind == "summary":
                self.summary = self._fields(rest)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(timeout=60)
        self.t.join(timeout=10)
        return rc


def broker_log_has(path, needle, timeout_s):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            with open(path, errors="replace") as f:
                if needle in f.read():
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.02)  # the broker log is the only readiness signal mosquitto_sub gives
    return False


def run_phase(a, cloud, hierarchy, n, prefix, metrics_s, stop_how):
    """One mass birth of `n` nodes; returns a dict of figures."""
    sites = hierarchy["sites"]
    access = [s for s in sites if s["level"] == 4]
    root = next(s for s in sites if s["level"] == 1)
    brokers = {s["id"]: Proc(s["pid"]) for s in sites}
    r = {"nodes": n}

    # Start from a quiet cloud: the previous phase's nodes are all gone.
    deadline = time.time() + 60
    while cloud.nodes("alive") > 0 and time.time() < deadline:
        time.sleep(POLL_S)

    peer = Peer(root["port"], prefix, n, os.path.join(a.work_dir, f"peer-{prefix}.log"))
    if not broker_log_has(os.path.join(a.run_dir, "cloud", "mosquitto.log"), peer.client_id, 10):
        log("warning: the peer's subscription was not seen in the cloud broker's log")
    time.sleep(0.2)  # its SUBSCRIBE follows the CONNECT the log shows

    cpu0 = cloud.proc.cpu_s()
    brokers0 = {k: p.cpu_s() for k, p in brokers.items()}
    argv = [a.sim, "-n", str(n), "--prefix", prefix, "--connect-rate", str(a.connect_rate),
            "--births-timeout-s", "300", "--progress-s", "5"]
    for s in access:
        argv += ["--broker", f"tcp://127.0.0.1:{s['port']}={s['path']}"]
    if metrics_s > 0:
        # The batches start after the births have converged, so the two are measured apart.
        argv += ["--metrics-interval-s", str(a.metrics_interval_s), "--metrics-delay-s", str(a.metrics_delay_s)]
    if stop_how == "wills":
        argv += ["--no-goodbye"]
    log(f"phase {prefix}: {n} nodes over {len(access)} access brokers")
    sim = Sim(argv, os.path.join(a.work_dir, f"sim-{prefix}.log"))

    peak = {"rss": 0.0}

    def sample(_m):
        peak["rss"] = max(peak["rss"], cloud.proc.status().get("VmRSS", 0))

    t_alive = cloud.wait_nodes("alive", n, 300, on_poll=sample)
    cpu_births = cloud.proc.cpu_s() - cpu0
    brokers_births = {k: p.cpu_s() - brokers0[k] for k, p in brokers.items()}
    st = cloud.proc.status()
    if not sim.born_event.wait(60) or t_alive is None:
        sim.stop()
        peer.stop()
        raise SystemExit(f"phase {prefix}: births did not converge (alive={cloud.nodes('alive')}, "
                         f"sim born={sim.born is not None}); see {a.work_dir}")
    b = sim.born
    deadline = time.time() + 30
    while peer.done_ms is None and time.time() < deadline:
        time.sleep(POLL_S)
    r.update({
        "connect_s": (b["all_born_ms"] - b["first_connect_ms"]) / 1000,
        "cloud_from_first_connect_s": (t_alive - b["first_connect_ms"]) / 1000,
        "cloud_from_first_birth_s": (t_alive - b["first_birth_ms"]) / 1000,
        "cloud_after_last_birth_s": (t_alive - b["last_birth_sent_ms"]) / 1000,
        "cloud_after_all_born_s": (t_alive - b["all_born_ms"]) / 1000,
        "peer_after_last_birth_s": None if peer.done_ms is None else (peer.done_ms - b["last_birth_sent_ms"]) / 1000,
        "peer_from_first_connect_s": None if peer.done_ms is None else (peer.done_ms - b["first_connect_ms"]) / 1000,
        "cloud_cpu_births_s": cpu_births,
        "cloud_rss_mib": st.get("VmRSS"),
        "cloud_hwm_mib": st.get("VmHWM"),
        "cloud_rss_peak_sampled_mib": peak["rss"],
        "brokers_cpu_births_s": sum(brokers_births.values()),
        "cloud_broker_cpu_births_s": brokers_births[root["id"]],
        "access_broker_cpu_births_max_s": max(brokers_births[s["id"]] for s in access),
    })
    peer.stop()

    # What one /metrics scrape costs nova-cloud at this many nodes: the convergence poll
    # above scrapes every 50 ms, so its CPU figure includes ~20 scrapes a second.
    scrapes, c0, t0 = 20, cloud.proc.cpu_s(), time.time()
    for _ in range(scrapes):
        cloud.metrics()
    r["scrape_ms"] = (time.time() - t0) * 1000 / scrapes
    r["scrape_cpu_ms"] = (cloud.proc.cpu_s() - c0) * 1000 / scrapes

    if metrics_s > 0:
        # Every node sends its first batch metrics_delay after its CONNACK plus its phase
        # (up to one interval): from then on the load is steady.
        start_ms = b["all_born_ms"] + (a.metrics_delay_s + a.metrics_interval_s) * 1000
        time.sleep(max(0.0, (start_ms - now_ms()) / 1000))
        m0, c0, t0 = cloud.metrics(), cloud.proc.cpu_s(), time.time()
        time.sleep(metrics_s)
        m1, c1, t1 = cloud.metrics(), cloud.proc.cpu_s(), time.time()
        dt = t1 - t0
        d = lambda k: m1.get(k, 0) - m0.get(k, 0)  # noqa: E731
        st = cloud.proc.status()
        r.update({
            "window_s": dt,
            "records_per_s": d("nova_cloud_records_stored_total") / dt,
            "samples_per_s": d("nova_cloud_samples_stored_total") / dt,
            "acks_per_s": d("nova_cloud_acks_sent_total") / dt,
            "store_writes_per_s": d("nova_cloud_store_writes_total") / dt,
            "duplicates": d("nova_cloud_records_duplicate_total"),
            "rejected": sum(v for k, v in m1.items() if k.startswith("nova_cloud_records_rejected_total")),
            "acks_deferred_total": m1.get("nova_cloud_acks_deferred_total", 0),
            "queue_depth_end": m1.get("nova_cloud_ingest_queue_depth", 0),
            "cloud_cpu_metrics_pct": 100 * (c1 - c0) / dt,
            "cloud_rss_metrics_mib": st.get("VmRSS"),
            "cloud_hwm_metrics_mib": st.get("VmHWM"),
        })

    # Stop: goodbyes ("offline") or, with --no-goodbye, closed sockets (the wills: "dead").
    target = "offline" if stop_how == "goodbye" else "dead"
    t_stop = now_ms()
    sim.stop()
    t_gone = cloud.wait_nodes(target, n, 120)
    r["stop"] = target
    r["all_gone_s"] = None if t_gone is None else (t_gone - t_stop) / 1000
    r["sim_summary"] = sim.summary
    # Mosquitto logs a full queue only as "Outgoing messages are being dropped".
    r["broker_drop_lines"] = 0
    for site in sites:
        with open(os.path.join(a.run_dir, site["id"], "mosquitto.log"), errors="replace") as f:
            r["broker_drop_lines"] += sum("dropped" in line for line in f)
    return r


def fmt(v, unit="", digits=2):
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}{unit}" if isinstance(v, float) else f"{v}{unit}"


def report(phases):
    print()
    print("nova-cloud scale benchmark (five-tier hierarchy, 8 access brokers, one machine)")
    keys = [
        ("nodes", "nodes", ""),
        ("connect_s", "sim: first connect -> every birth PUBACKed", " s"),
        ("cloud_from_first_connect_s", "nova-cloud all alive, from first connect", " s"),
        ("cloud_from_first_birth_s", "nova-cloud all alive, from first birth sent", " s"),
        ("cloud_after_last_birth_s", "nova-cloud all alive, after last birth sent", " s"),
        ("cloud_after_all_born_s", "nova-cloud all alive, after last birth PUBACK", " s"),
        ("peer_from_first_connect_s", "peer (mosquitto_sub) all seen, from first connect", " s"),
        ("peer_after_last_birth_s", "peer (mosquitto_sub) all seen, after last birth sent", " s"),
        ("cloud_cpu_births_s", "nova-cloud CPU during the births", " s"),
        ("cloud_rss_mib", "nova-cloud VmRSS after the births", " MiB"),
        ("cloud_hwm_mib", "nova-cloud VmHWM after the births", " MiB"),
        ("brokers_cpu_births_s", "15 brokers' CPU during the births", " s"),
        ("cloud_broker_cpu_births_s", "  of which the cloud broker", " s"),
        ("access_broker_cpu_births_max_s", "  the busiest access broker", " s"),
        ("scrape_ms", "one /metrics scrape: wall time", " ms"),
        ("scrape_cpu_ms", "one /metrics scrape: nova-cloud CPU", " ms"),
        ("window_s", "metrics window", " s"),
        ("records_per_s", "records stored/s", ""),
        ("samples_per_s", "samples stored/s", ""),
        ("acks_per_s", "acks sent/s", ""),
        ("store_writes_per_s", "synced store writes/s", ""),
        ("duplicates", "duplicates in the window", ""),
        ("rejected", "records rejected (total)", ""),
        ("queue_depth_end", "ingest queue depth at the end", ""),
        ("cloud_cpu_metrics_pct", "nova-cloud CPU in the window", " %"),
        ("cloud_rss_metrics_mib", "nova-cloud VmRSS after the window", " MiB"),
        ("cloud_hwm_metrics_mib", "nova-cloud VmHWM after the window", " MiB"),
        ("stop", "stopped with", ""),
        ("all_gone_s", "stop -> nova-cloud sees every node gone", " s"),
        ("broker_drop_lines", "brokers' \"dropped\" log lines, cumulative", ""),
    ]
    width = max(len(label) for _, label, _ in keys)
    for key, label, unit in keys:
        if not any(key in p for p in phases):
            continue
        cells = [fmt(p.get(key), unit).rjust(12) for p in phases]
        print(f"  {label.ljust(width)} {' '.join(cells)}")
    for p in phases:
        s = p.get("sim_summary") or {}
        if s:
            print(f"  sim {p['nodes']}: connects={s['connects']} connect_failures={s['connect_failures']} "
                  f"disconnects={s['disconnects']} batches_sent={s['batches_sent']} "
                  f"acks_received={s['acks_received']} nodes_fully_acked={s['nodes_fully_acked']}")
    if len(phases) == 2:
        small, large = phases
        ratio = lambda k: (large[k] / small[k]) if small.get(k) and large.get(k) is not None else None  # noqa: E731
        print(f"  ratio {large['nodes']}/{small['nodes']} nodes: convergence after last birth "
              f"{fmt(ratio('cloud_after_last_birth_s'))}x, from first connect {fmt(ratio('cloud_from_first_connect_s'))}x, "
              f"CPU {fmt(ratio('cloud_cpu_births_s'))}x")
    for p in phases:
        if p.get("peer_after_last_birth_s") is not None:
            print(f"  {p['nodes']} nodes: nova-cloud - peer, from first connect: "
                  f"{fmt(p['cloud_from_first_connect_s'] - p['peer_from_first_connect_s'])} s "
                  f"(poll resolution {POLL_S:.2f} s)")
    target = phases[-1].get("cloud_after_last_birth_s")
    if target is not None:
        print(f"  target: converged within 5 s after the mass birth: "
              f"{'met' if target <= 5 else 'MISSED'} ({fmt(target)} s)")
    print(json.dumps(phases), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--sim", required=True)
    ap.add_argument("--cloud-pid", type=int, required=True)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--metrics-s", type=int, default=60)
    ap.add_argument("--metrics-interval-s", type=int, default=10)
    ap.add_argument("--metrics-delay-s", type=int, default=20)
    ap.add_argument("--connect-rate", type=int, default=2000)
    a = ap.parse_args()

    with open(os.path.join(a.run_dir, "hierarchy.json")) as f:
        hierarchy = json.load(f)
    cloud = Cloud(a.http_port, a.cloud_pid)
    phases = []
    # Fresh prefixes per phase: the sim does not persist seqs, the cloud's store does.
    if a.small > 0:
        phases.append(run_phase(a, cloud, hierarchy, a.small, "s1k" if a.small == 1000 else f"s{a.small}", 0, "goodbye"))
    phases.append(run_phase(a, cloud, hierarchy, a.nodes, re.sub(r"000$", "k", f"l{a.nodes}"), a.metrics_s, "wills"))
    report(phases)


if __name__ == "__main__":
    main()
