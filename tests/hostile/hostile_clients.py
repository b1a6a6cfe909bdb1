#!/usr/bin/python3
"""Hostile clients against a running nova-agent and nova-cloud (docs/error-contract.md).

One Mosquitto, one nova-agent (node gw-h) and one nova-cloud, all real processes started
here. An independent MQTT client (paho-mqtt) and HTTP client (http.client) send malformed
and abusive input to every surface: the agent's sensor topics, the agent's down topics,
the up topics nova-cloud consumes, and the REST API. Each case checks the documented
answer (error reply, log line, counter, HTTP status) and that the daemon is still alive;
the final checks prove that good input is still served afterwards. One line per case:

    PASS|FAIL <case> | expected: ... | observed: ...

Usage: hostile_clients.py --agent <nova-agent> --cloud <nova-cloud>
Exit status 0 when every case passed.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time

import cbor2

from hostile_env import Agent, Broker, Cloud, MqttClient, Signer, wait_until

NODE, SITE = Agent.NODE, Agent.SITE
SENSOR_PREFIX = f"nova/v1/sensor/{NODE}/"
DOWN_PREFIX = f"nova/v1/down/{SITE}/{NODE}/"
OVER_LIMIT = 300 * 1024  # above the topic API's 256 KiB message size limit
REPLY_TIMEOUT_S = 5      # generous for one local round trip; only a failing case waits it out


def now_ms():
    return int(time.time() * 1000)


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def case(self, name, expected, ok, observed):
        print(f"{'PASS' if ok else 'FAIL'} {name} | expected: {expected} | observed: {observed}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed.append(name)


# ---------------------------------------------------------------------------- payloads

def reading(**extra):
    r = {"v": 1, "ts": now_ms(), "values": {"temp": 21.5}}
    r.update(extra)
    return r


def as_json(obj):
    return json.dumps(obj).encode()


def as_cbor(obj):
    return cbor2.dumps(obj)


def nested_json(depth):
    return "[" * depth + "1" + "]" * depth


def nested_cbor(depth):
    return b"\x81" * depth + b"\x01"  # [[[...[1]...]]]


def task(task_id, argv=("/bin/true",), **override):
    t = {"v": 1, "task_id": task_id, "argv": list(argv), "timeout_ms": 10000, "memory_mb": 0,
         "cpu_millis": 0, "priority": 1, "issued_ts": now_ms()}
    t.update(override)
    return t


def sample():
    return {"ts": now_ms(), "cpu": 1.0, "mem": 2.0, "disk": 3.0, "load1": 0.1, "net_rx": 0.0, "net_tx": 0.0}


def batch(node, seq, **override):
    b = {"v": 1, "node": node, "stream": "metrics", "seq": seq, "enc": "plain", "samples": [sample()]}
    b.update(override)
    return b


def birth(node, bdseq=1, status="online"):
    s = {"v": 1, "node": node, "status": status, "bdseq": bdseq, "ts": now_ms()}
    if status == "online":
        s.update({"level": 5, "site": SITE, "arch": "x86_64", "version": "hostile",
                  "res": {"cpu_millis": 0, "memory_mb": 0, "storage_mb": 0}})
    return s


def alert(node, seq):
    return {"v": 1, "node": node, "stream": "alerts", "seq": seq, "alert_id": f"alert-{seq}", "ts": now_ms(),
            "severity": "warning", "metric": "cpu", "observed": 95.0, "threshold": 90.0, "message": "hot"}


def workload(workload_id, argv=("/bin/echo", "hostile"), **override):
    w = {"v": 1, "workload_id": workload_id, "name": "hostile suite", "argv": list(argv),
         "res": {"cpu_millis": 0, "memory_mb": 0, "storage_mb": 0}, "caps": [Agent.CAPABILITY],
         "availability": 0.5, "timeout_ms": 10000}
    w.update(override)
    return w


# ------------------------------------------------------------------ expected fields

ANY_FIELD = ("any field", lambda f: isinstance(f, str))
WHOLE = ('field ""', lambda f: f == "")


def field_at(path):
    """The field is `path` or a member below it."""
    return (f"field {path}*", lambda f: isinstance(f, str) and (f == path or f.startswith(path + ".")
                                                                 or f.startswith(path + "[")))


class Suite:
    def __init__(self, args, workdir):
        self.args = args
        self.dir = workdir
        self.report = Report()
        self.broker = Broker(workdir)
        self.signer = Signer(self._sub("keys"))
        self.cloud = Cloud(args.cloud, self._sub("cloud"), self.broker.uri, self.signer)
        self.agent = Agent(args.agent, self._sub("agent"), self.broker.uri, self.signer)
        self.agent_restarts = 0
        self.cloud_restarts = 0
        self.undecodable_sent = 0  # what this suite sent that nova-cloud must count as undecodable
        self.pub = MqttClient(self.broker.port)
        self.watch = MqttClient(self.broker.port, ["nova/v1/sensor/#", f"nova/v1/up/{NODE}/+", "nova/v1/down/#"])
        if not self.agent.wait_connected(0):
            raise RuntimeError("nova-agent did not connect:\n" + self.agent.text()[-2000:])
        # The cloud has the agent's birth (so it places work on it and acks its records).
        if not wait_until(lambda: self._liveness(NODE) == "alive", 15):
            raise RuntimeError("nova-cloud never saw gw-h alive:\n" + self.cloud.text()[-2000:])

    def _sub(self, name):
        d = os.path.join(self.dir, name)
        os.makedirs(d, exist_ok=True)
        return d

    def _liveness(self, node):
        status, body, _ = self.cloud.request("GET", f"/api/v1/nodes/{node}")
        return body.get("liveness") if status == 200 and isinstance(body, dict) else None

    # ------------------------------------------------------------------ liveness

    def agent_alive(self, case):
        """True if the agent still runs; otherwise reports it and brings a fresh one up."""
        if self.agent.alive():
            return True
        status = self.agent.exit_status()
        self.report.case(f"{case}: nova-agent survives", "process alive", False, f"exited with status {status}")
        # A poison message may still sit in the agent's persistent session: take the
        # session over with a clean one (clears it), then start the agent again.
        MqttClient(self.broker.port, client_id=NODE, clean_session=True).close()
        connects = self.agent.count("event=connected")
        self.agent.start()
        self.agent_restarts += 1
        self.agent.wait_connected(connects)
        return False

    def cloud_alive(self, case):
        if self.cloud.alive() and self.cloud.healthy():
            return True
        self.report.case(f"{case}: nova-cloud survives", "process alive and healthy", False,
                         f"alive={self.cloud.alive()} status={self.cloud.exit_status()}")
        if not self.cloud.alive():
            self.cloud.start()
            self.cloud_restarts += 1
            wait_until(self.cloud.healthy, 10)
        return False

    # ------------------------------------------------------------- sensor readings

    def sensor_refused(self, name, sensor, payload, fmt, field=ANY_FIELD):
        """A refused reading: a sensor-error in the reading's format on <sensor>/error naming
        the field and a reason, one event=sensor_reading_refused line, the agent alive."""
        expected = f"{fmt} error reply, {field[0]}, reason; log sensor_reading_refused; alive"
        mark, log_at = self.watch.mark(), self.agent.log_size()
        reply_topic = SENSOR_PREFIX + sensor + "/error"
        self.pub.publish(SENSOR_PREFIX + sensor, payload)
        got = self.wait_reply(lambda t, p: t == reply_topic, mark)
        logged = wait_until(lambda: any("event=sensor_reading_refused" in l and f"sensor={sensor} " in l
                                        for l in self.agent.lines_since(log_at)), 0 if got is None else 3)
        problems, shown = [], "no reply"
        if got is None:
            problems.append("no reply")
        else:
            try:
                error = json.loads(got[1].decode("utf-8")) if fmt == "JSON" else cbor2.loads(got[1])
                shown = f"field={error.get('field')!r} reason={error.get('reason')!r}"
                if error.get("v") != 1 or error.get("sensor") != sensor:
                    problems.append(f"reply v/sensor wrong: {error.get('v')!r}/{error.get('sensor')!r}")
                if not field[1](error.get("field")):
                    problems.append("wrong field")
                if not isinstance(error.get("reason"), str) or not error["reason"]:
                    problems.append("no reason")
            except (ValueError, UnicodeDecodeError, cbor2.CBORDecodeError, AttributeError) as e:
                problems.append(f"reply is not {fmt}: {e}")
                shown = repr(got[1][:80])
        if not logged:
            problems.append("no log line")
        alive = self.agent_alive(name)
        if not alive:
            problems.append("agent died")
        self.report.case(name, expected, not problems, shown + ("" if not problems else " [" + "; ".join(problems) + "]"))

    def wait_reply(self, predicate, mark):
        """The first matching message, or None after REPLY_TIMEOUT_S or once the agent died."""
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while time.monotonic() < deadline:
            got = self.watch.wait_for(predicate, 0.25, mark)
            if got is not None or not self.agent.alive():
                return got
        return None

    def barrier(self):
        """Waits until the agent has handled everything published before: it answers a bad
        reading on a sensor of its own, in order, after what came earlier."""
        self.barrier_n = getattr(self, "barrier_n", 0) + 1
        sensor = f"barrier{self.barrier_n}"
        mark = self.watch.mark()
        self.pub.publish(SENSOR_PREFIX + sensor, b"{")
        return self.watch.wait_for(lambda t, p: t == SENSOR_PREFIX + sensor + "/error", REPLY_TIMEOUT_S, mark) is not None

    def agent_ignores(self, name, topic, payload, why):
        """A topic outside the agent's subscriptions: nothing happens, no reply, no log line."""
        mark, log_at = self.watch.mark(), self.agent.log_size()
        self.pub.publish(topic, payload)
        drained = self.barrier()
        # Only what this topic could cause: replies to other sensors may still be queued.
        stray = [t for t, _, _ in self.watch.since(mark) if t == topic + "/error"]
        lines = [l for l in self.agent.lines_since(log_at) if topic in l]
        ok = drained and not stray and not lines and self.agent_alive(name)
        self.report.case(name, f"ignored ({why}): no reply, no log line; alive", ok,
                         f"replies={stray} log={lines[:1]}" if drained else "agent stopped answering")

    # --------------------------------------------------------------- down topics

    def agent_logs(self, name, topic, payload, event, must_contain, retain=False, signed=True):
        """A refused downward message: one log line `event=<event>` naming the topic's field.
        Sent in a validly signed envelope (as nova-cloud would), so that the message inside
        is judged, unless `signed` is False."""
        log_at = self.agent.log_size()
        self.pub.publish(topic, self.signer.sign(topic, payload) if signed else payload, retain=retain)

        def line():
            return next((l for l in self.agent.lines_since(log_at) if f"event={event}" in l and must_contain in l), None)

        found = wait_until(line, REPLY_TIMEOUT_S)
        alive = self.agent_alive(name)
        self.report.case(name, f"log event={event} with '{must_contain}'; alive", bool(found) and alive,
                         (found or "no such line: " + " / ".join(self.agent.lines_since(log_at)[-2:]))[:300])

    # -------------------------------------------------------------------- cloud

    def rejected(self, reason):
        return self.cloud.metric("nova_cloud_records_rejected_total", f'reason="{reason}"')

    def cloud_rejects(self, name, topic, payload, reason):
        """A refused upward message: records_rejected{reason} + 1 and a record_rejected line."""
        before, log_at = self.rejected(reason), self.cloud.log_size()
        if reason == "undecodable":
            self.undecodable_sent += 1
        self.pub.publish(topic, payload)
        counted = wait_until(lambda: (self.rejected(reason) or 0) >= before + 1, REPLY_TIMEOUT_S)
        line = wait_until(lambda: next((l for l in self.cloud.lines_since(log_at)
                                        if "event=record_rejected" in l and f"reason={reason}" in l
                                        and f'topic="{topic}"' in l), None), 2)
        alive = self.cloud_alive(name)
        self.report.case(name, f"records_rejected{{reason={reason}}} +1, log record_rejected; alive",
                         bool(counted and line and alive),
                         f"counter {before} -> {self.rejected(reason)}; " + (line or "no log line")[:200])

    def cloud_stores(self, name, topic, payload):
        """A valid but unusual record: stored, nothing rejected."""
        before, log_at = self.cloud.metric("nova_cloud_records_stored_total"), self.cloud.log_size()
        self.pub.publish(topic, payload)
        stored = wait_until(lambda: (self.cloud.metric("nova_cloud_records_stored_total") or 0) >= before + 1,
                            REPLY_TIMEOUT_S)
        # The agent's batches are stored too: the counter alone cannot tell whose record it was.
        refused = [l for l in self.cloud.lines_since(log_at) if f'topic="{topic}"' in l]
        alive = self.cloud_alive(name)
        self.report.case(name, "stored (records_stored +1), not rejected; alive", bool(stored and not refused and alive),
                         f"records_stored {before} -> {self.cloud.metric('nova_cloud_records_stored_total')}"
                         + (f"; {refused[0][:200]}" if refused else ""))

    def http(self, name, method, path, status, must_contain="", body=None, headers=None, token=True):
        """An HTTP request refused with `status` and {"error": "..."} naming the field."""
        got, parsed, raw = self.cloud.request(method, path, body=body, headers=headers, token=token)
        error = parsed.get("error") if isinstance(parsed, dict) else None
        ok = got == status and isinstance(error, str) and must_contain in error
        alive = self.cloud_alive(name)
        shown = f"HTTP {got} {raw[:160]!r}" if got is not None else raw
        self.report.case(name, f'HTTP {status} {{"error": "...{must_contain}..."}}; alive', ok and alive, shown)


# ====================================================================== the cases

def sensor_cases(s):
    valid_cbor = as_cbor(reading())
    s.sensor_refused("sensor: JSON value of wrong type", "s01",
                     as_json(reading(values={"temp": "warm"})), "JSON", field_at("reading.values.temp"))
    s.sensor_refused("sensor: CBOR value of wrong type", "s02",
                     as_cbor(reading(values={"temp": "warm"})), "CBOR", field_at("reading.values.temp"))
    s.sensor_refused("sensor: CBOR NaN", "s03", as_cbor(reading(values={"temp": float("nan")})), "CBOR",
                     field_at("reading.values.temp"))
    s.sensor_refused("sensor: CBOR +Infinity", "s04", as_cbor(reading(values={"temp": float("inf")})), "CBOR",
                     field_at("reading.values.temp"))
    s.sensor_refused("sensor: JSON NaN literal (not JSON)", "s05",
                     b'{"v":1,"ts":1732650000000,"values":{"temp":NaN}}', "JSON", WHOLE)
    s.sensor_refused("sensor: JSON number overflowing to infinity", "s06",
                     b'{"v":1,"ts":1732650000000,"values":{"temp":1e999}}', "JSON", ANY_FIELD)
    s.sensor_refused("sensor: JSON null value", "s07", as_json(reading(values={"temp": None})), "JSON",
                     field_at("reading.values.temp"))
    s.sensor_refused("sensor: wrong schema version", "s08", as_json(reading(v=2)), "JSON", field_at("reading.v"))
    s.sensor_refused("sensor: ts of wrong type", "s09", as_json(reading(ts="yesterday")), "JSON", field_at("reading.ts"))
    s.sensor_refused("sensor: empty values map", "s10", as_json(reading(values={})), "JSON", field_at("reading.values"))
    s.sensor_refused("sensor: 33 values (limit 32)", "s11",
                     as_json(reading(values={f"g{i}": 1.0 for i in range(33)})), "JSON", field_at("reading.values"))
    s.sensor_refused("sensor: value name of 65 bytes (id limit 64)", "s12",
                     as_json(reading(values={"n" * 65: 1.0})), "JSON", field_at("reading.values"))
    s.sensor_refused("sensor: unit of 33 bytes (limit 32)", "s13", as_json(reading(unit="u" * 33)), "JSON",
                     field_at("reading.unit"))
    s.sensor_refused("sensor: JSON duplicate key", "s14",
                     b'{"v":1,"ts":1732650000000,"values":{"temp":1.5,"temp":2.5}}', "JSON",
                     field_at("reading.values.temp"))
    s.sensor_refused("sensor: CBOR duplicate key", "s15",
                     b"\xa3\x61v\x01\x62ts\x01\x66values\xa2\x64temp\x01\x64temp\x02", "CBOR",
                     field_at("reading.values.temp"))
    s.sensor_refused("sensor: empty payload", "s16", b"", "CBOR", WHOLE)
    s.sensor_refused("sensor: binary garbage", "s17", b"\x00\x01garbage\xff", "CBOR", WHOLE)
    s.sensor_refused("sensor: truncated CBOR", "s18", valid_cbor[:-4], "CBOR", WHOLE)
    s.sensor_refused("sensor: truncated JSON", "s19", as_json(reading())[:-7], "JSON", WHOLE)
    s.sensor_refused("sensor: CBOR bomb 9a9a9a9a9a9a9a53", "s20", bytes.fromhex("9a9a9a9a9a9a9a53"), "CBOR", ANY_FIELD)
    s.sensor_refused("sensor: CBOR map declaring 2^32-1 members", "s21", bytes.fromhex("bbffffffff") + valid_cbor[1:],
                     "CBOR", ANY_FIELD)
    s.sensor_refused("sensor: JSON nested 200 deep", "s22",
                     ('{"v":1,"ts":1732650000000,"values":{"temp":1},"x":' + nested_json(200) + "}").encode(),
                     "JSON", ANY_FIELD)
    s.sensor_refused("sensor: CBOR nested 200 deep", "s23",
                     b"\xa4" + valid_cbor[1:] + b"\x61x" + nested_cbor(200), "CBOR", ANY_FIELD)
    s.sensor_refused("sensor: JSON over 256 KiB", "s24", as_json(reading(pad="a" * OVER_LIMIT)), "JSON", WHOLE)
    s.sensor_refused("sensor: CBOR over 256 KiB", "s25", as_cbor(reading(pad="a" * OVER_LIMIT)), "CBOR", WHOLE)
    s.sensor_refused("sensor: CBOR text with invalid UTF-8", "s26",
                     b"\xa4" + valid_cbor[1:] + b"\x64unit\x62\xc3\x28", "CBOR", field_at("reading.unit"))
    # An id-valid sensor (64 bytes) and value name (64 bytes) make a gauge name
    # sensor.<sensor>.<name> of 136 bytes, which no metrics batch may carry: refused at the edge.
    s.sensor_refused("sensor: gauge name sensor.<64 B>.<64 B> over the id limit", "S" * 64,
                     as_json(reading(values={"n" * 64: 1.0})), "JSON", field_at("reading.values"))
    burst_cases(s)
    # Topic shapes: the agent's filter is nova/v1/sensor/<node>/+ only.
    s.agent_ignores("sensor topic: extra level", SENSOR_PREFIX + "s30/extra", as_json(reading()), "not subscribed")
    s.agent_ignores("sensor topic: other node", "nova/v1/sensor/gw-other/s31", b"{", "not subscribed")
    s.agent_ignores("sensor topic: a forged /error reply", SENSOR_PREFIX + "s32/error", b"{", "not subscribed")
    s.agent_logs("sensor topic: sensor id of 65 bytes", SENSOR_PREFIX + "x" * 65, as_json(reading()),
                 "bad_message", SENSOR_PREFIX + "x" * 65)
    s.agent_logs("sensor topic: sensor id with '$'", SENSOR_PREFIX + "bad$id", as_json(reading()),
                 "bad_message", SENSOR_PREFIX + "bad$id")


def burst_cases(s):
    # Every refused reading is answered, in a burst too (schemas/topics.md, "Error replies").
    n = 200
    topic = SENSOR_PREFIX + "burst"
    mark, log_at = s.watch.mark(), s.agent.log_size()
    s.pub.publish_burst(topic, [as_json(reading(values={"temp": f"bad-{i}"})) for i in range(n)])
    replies = s.watch.wait_count(lambda t, p: t == topic + "/error", n, 15, mark)
    logged = sum(1 for l in s.agent.lines_since(log_at) if "sensor_reading_refused" in l and "sensor=burst " in l)
    s.report.case(f"sensor: burst of {n} bad readings", f"{n} error replies, {n} log lines; alive",
                  replies == n and logged == n and s.agent_alive("burst"), f"{replies} replies, {logged} log lines")

    # A noisy sensor's flood of gauges must not starve a quiet one: its one reading,
    # published right after the flood, reaches a metrics batch (checked in final_checks).
    s.quiet_mark = s.watch.mark()
    s.pub.publish_burst(SENSOR_PREFIX + "noisy",
                        [as_json(reading(values={f"g{r}x{i}": 1.0 for i in range(32)})) for r in range(8)])
    s.pub.publish(SENSOR_PREFIX + "quiet", as_json(reading(values={"q": 7.0})))


def down_cases(s):
    t = DOWN_PREFIX
    s.agent_logs("task: garbage", t + "task", b"not cbor at all", "bad_message", "task")
    s.agent_logs("task: truncated", t + "task", as_cbor(task("t-trunc"))[:-5], "bad_message", "task")
    s.agent_logs("task: argv of wrong type", t + "task", as_cbor(dict(task("t-argv"), argv="echo")), "bad_message", "task.argv")
    s.agent_logs("task: timeout_ms 0 (range 1..)", t + "task", as_cbor(task("t-timeout", timeout_ms=0)),
                 "bad_message", "task.timeout_ms")
    s.agent_logs("task: task_id not an id", t + "task", as_cbor(task("../etc/passwd")), "bad_message", "task.task_id")
    # Over the size limit, the envelope itself is refused before anything is verified.
    s.agent_logs("task: over 256 KiB", t + "task", as_cbor(task("t-huge", env={"PAD": "a" * OVER_LIMIT})),
                 "control_refused", "over the limit")
    s.agent_logs("task: CBOR bomb", t + "task", bytes.fromhex("9a9a9a9a9a9a9a53"), "bad_message", "task")
    s.agent_ignores("down topic: unknown kind", t + "bogus", as_cbor(task("t-kind")), "not subscribed")
    s.agent_ignores("down topic: extra level", t + "task/extra", as_cbor(task("t-extra")), "not subscribed")
    # Unsigned, claiming nothing but the topic: refused before the message is looked at.
    s.agent_logs("task: unsigned", t + "task", as_cbor(task("t-unsigned")), "control_refused", "reason=unsigned",
                 signed=False)
    s.agent_logs("ack: unsigned (forged)", t + "ack",
                 as_cbor({"v": 1, "node": NODE, "ts": now_ms(), "watermarks": {"metrics": 1 << 40}}),
                 "control_refused", "reason=unsigned", signed=False)
    s.agent_logs("config: retained unsigned", t + "config",
                 as_cbor({"v": 1, "revision": 99, "ts": now_ms(), "values": {"drain.burst": 5}}),
                 "control_refused", "reason=unsigned", retain=True, signed=False)
    s.agent_logs("ack: garbage", t + "ack", b"\xff\xff", "bad_message", "ack")
    s.agent_logs("ack: for another node", t + "ack",
                 as_cbor({"v": 1, "node": "someone-else", "ts": now_ms(), "watermarks": {"metrics": 1}}),
                 "bad_message", "ack for node 'someone-else'")
    s.agent_logs("ack: watermark of wrong type", t + "ack",
                 as_cbor({"v": 1, "node": NODE, "ts": now_ms(), "watermarks": {"metrics": "all"}}),
                 "bad_message", "ack.watermarks")
    s.agent_logs("ack: truncated", t + "ack",
                 as_cbor({"v": 1, "node": NODE, "ts": now_ms(), "watermarks": {"metrics": 1}})[:-3],
                 "bad_message", "ack")
    s.agent_logs("config: revision of wrong type", t + "config",
                 as_cbor({"v": 1, "revision": "one", "ts": now_ms(), "values": {}}), "bad_message", "config.revision")
    s.agent_logs("config: unknown key", t + "config",
                 as_cbor({"v": 1, "revision": 7, "ts": now_ms(), "values": {"no.such_key": 1}}),
                 "remote_config_refused", "no.such_key")
    s.agent_logs("config: value out of range", t + "config",
                 as_cbor({"v": 1, "revision": 8, "ts": now_ms(), "values": {"drain.burst": 0}}),
                 "remote_config_refused", "drain.burst")
    s.agent_logs("config: over 256 KiB", t + "config",
                 as_cbor({"v": 1, "revision": 9, "ts": now_ms(), "values": {"log.level": "a" * OVER_LIMIT}}),
                 "control_refused", "over the limit")
    s.agent_logs("model: unknown kind", t + "model",
                 as_cbor({"v": 1, "model_id": "m1", "revision": 1, "kind": "linear", "ts": now_ms()}),
                 "bad_message", "linear")
    s.agent_logs("model: negative threshold", t + "model",
                 as_cbor({"v": 1, "model_id": "m2", "revision": 2, "kind": "zscore", "params": {"threshold": -1},
                          "ts": now_ms()}), "bad_message", "threshold")
    s.agent_logs("model: NaN parameter", t + "model",
                 as_cbor({"v": 1, "model_id": "m3", "revision": 3, "kind": "zscore",
                          "params": {"threshold": float("nan")}, "ts": now_ms()}), "bad_message", "model.params")
    s.agent_logs("model: a tree whose child comes before its node", t + "model",
                 as_cbor({"v": 1, "model_id": "m4", "revision": 4, "kind": "tree_ensemble",
                          "features": ["cpu"], "params": {"threshold": 1.0},
                          "trees": [[{"feature": 0, "split": 50.0, "left": 0, "right": 1}, {"leaf": 1.0}]],
                          "ts": now_ms()}), "bad_message", "model.trees[0][0].left: 0 is not after its node 0")
    s.agent_logs("config: retained garbage", t + "config", b"retained garbage", "bad_message", "config", retain=True)
    s.agent_logs("model: retained garbage", t + "model", b"\xa1", "bad_message", "model", retain=True)

    # A task on another node's topic is not delivered to this agent: it never runs
    # (judged in final_checks, once a task published after it has run).
    other = f"nova/v1/down/{SITE}/gw-other/task"
    s.pub.publish(other, s.signer.sign(other, as_cbor(task("t-other"))))

    # Retained garbage comes back on every (re)connect: a restart must not crash-loop.
    connects = s.agent.count("event=connected")
    bad = s.agent.count("event=bad_message")
    status = s.agent.stop(signal.SIGTERM)
    s.agent.start()
    reconnected = s.agent.wait_connected(connects)
    again = wait_until(lambda: s.agent.count("event=bad_message") >= bad + 2, REPLY_TIMEOUT_S)
    s.report.case("config+model: retained garbage at restart", "exit 0 on SIGTERM; reconnects; both refused again; alive",
                  status == 0 and bool(reconnected and again) and s.agent_alive("restart"),
                  f"exit={status} reconnected={bool(reconnected)} bad_message +{s.agent.count('event=bad_message') - bad}")


def cloud_cases(s):
    def up(node, kind):
        return f"nova/v1/up/{node}/{kind}"

    s.cloud_rejects("state: garbage", up("h-c01", "state"), b"garbage", "undecodable")
    s.cloud_rejects("state: node differs from topic", up("h-c02", "state"), as_cbor(birth("h-someone")), "node_mismatch")
    s.cloud_rejects("state: unknown status", up("h-c03", "state"), as_cbor(birth("h-c03", status="zombie")), "undecodable")
    s.cloud_rejects("state: invalid UTF-8 in site", up("h-c04", "state"),
                    as_cbor(birth("h-c04")).replace(SITE.encode(), b"cloud/\xff\xfe/par/par-a1"), "undecodable")
    s.cloud_rejects("state: nested 200 deep", up("h-c05", "state"),
                    b"\xa2\x61v\x01\x61x" + nested_cbor(200), "undecodable")
    s.cloud_rejects("death: garbage will", up("h-c06", "state"), b"\x9a\x9a\x9a\x9a\x9a\x9a\x9a\x53", "undecodable")
    s.cloud_rejects("metrics: garbage", up("h-c07", "metrics"), b"\x00garbage", "undecodable")
    s.cloud_rejects("metrics: truncated", up("h-c08", "metrics"), as_cbor(batch("h-c08", 1))[:-6], "undecodable")
    s.cloud_rejects("metrics: node differs from topic", up("h-c09", "metrics"), as_cbor(batch("h-other", 1)), "node_mismatch")
    s.cloud_rejects("metrics: unknown enc", up("h-c10", "metrics"), as_cbor(batch("h-c10", 1, enc="gzip")), "undecodable")
    s.cloud_rejects("metrics: an alert on the metrics topic (wrong kind)", up("h-c11", "metrics"),
                    as_cbor(alert("h-c11", 1)), "undecodable")
    s.cloud_rejects("metrics: over 256 KiB", up("h-c12", "metrics"),
                    as_cbor(batch("h-c12", 1, pad="a" * OVER_LIMIT)), "undecodable")
    s.cloud_rejects("metrics: CBOR bomb", up("h-c13", "metrics"), bytes.fromhex("9a9a9a9a9a9a9a53"), "undecodable")
    s.cloud_rejects("metrics: seq 0", up("h-c14", "metrics"), as_cbor(batch("h-c14", 0)), "undecodable")
    s.cloud_rejects("metrics: seq beyond 64 bits", up("h-c15", "metrics"), as_cbor(batch("h-c15", 2**64)), "undecodable")
    s.cloud_rejects("result: garbage", up("h-c16", "result"), b"{}", "undecodable")
    s.cloud_rejects("result: unknown status", up("h-c17", "result"),
                    as_cbor({"v": 1, "node": "h-c17", "stream": "results", "seq": 1, "task_id": "t",
                             "status": "exploded", "finished_ts": 1, "output": ""}), "undecodable")
    s.cloud_rejects("decision: garbage", up("h-c18", "decision"), b"\xbf", "undecodable")
    s.cloud_rejects("decision: node differs from topic", up("h-c19", "decision"),
                    as_cbor({"v": 1, "node": "h-other", "stream": "decisions", "seq": 1, "decision_id": "d1",
                             "ts": 1, "kind": "k", "action": "a", "confidence": 0.5, "offline": False}), "node_mismatch")
    s.cloud_rejects("alert: garbage", up("h-c20", "alert"), b"\xa1\x61v", "undecodable")
    s.cloud_rejects("alert: NaN observed", up("h-c21", "alert"),
                    as_cbor(dict(alert("h-c21", 1), observed=float("nan"))), "undecodable")
    s.cloud_rejects("link: garbage", up("h-c22", "link"), b"up", "bad_link_state")
    s.cloud_rejects("link: empty", up("h-c23", "link"), b"", "bad_link_state")
    s.cloud_rejects("up topic: node id with '$'", up("bad$node", "state"), as_cbor(birth("h-c24")), "bad_topic")
    s.cloud_rejects("up topic: node id of 65 bytes", up("n" * 65, "metrics"), as_cbor(batch("h-c25", 1)), "bad_topic")
    # A huge seq is valid (uint): stored, waiting above the watermark for its predecessors.
    # Valid CBOR, but 2^64-1 is far beyond a new stream's watermark (ingest.max_seq_ahead):
    # stored, it would have made the stream's later records wait or count as duplicates.
    s.cloud_rejects("metrics: seq 2^64-1", up("h-c26", "metrics"), as_cbor(batch("h-c26", 2**64 - 1)),
                    "seq_too_far_ahead")

    # A will with a bdseq other than the held birth's is stale: ignored, node stays alive.
    status, node, _ = s.cloud.request("GET", f"/api/v1/nodes/{NODE}")
    bdseq = node.get("bdseq", 0) if isinstance(node, dict) else 0
    s.pub.publish(up(NODE, "state"), as_cbor(dict(birth(NODE, bdseq + 1000, "dead"))))
    s.cloud_rejects("link: '2' after a stale will", up("h-c27", "link"), b"2", "bad_link_state")
    s.report.case("death: stale will of gw-h (other bdseq)", "ignored: gw-h stays alive", s._liveness(NODE) == "alive",
                  f"liveness={s._liveness(NODE)}")


def rest_cases(s):
    api = "/api/v1"
    js = {"Content-Type": "application/json"}
    s.http("REST: malformed JSON", "POST", api + "/workloads", 400, "", body=b'{"v":1,', headers=js)
    s.http("REST: field of wrong type", "POST", api + "/workloads", 400, "workload.argv",
           body=as_json(dict(workload("w-type"), argv="echo")), headers=js)
    s.http("REST: workload_id not an id", "POST", api + "/workloads", 400, "workload.workload_id",
           body=as_json(workload("../../etc")), headers=js)
    s.http("REST: invalid UTF-8 in JSON", "POST", api + "/workloads", 400, "",
           body=b'{"v":1,"workload_id":"w-\xff\xfe","name":"x"}', headers=js)
    s.http("REST: JSON nested 10000 deep", "POST", api + "/workloads", 400, "",
           body=nested_json(10000).encode(), headers=js)
    s.http("REST: wrong content type, body not JSON", "POST", api + "/workloads", 415, "Content-Type",
           body=b"argv=/bin/echo", headers={"Content-Type": "application/x-www-form-urlencoded"})
    # Issue 10: writes without credentials, from a web page, under a foreign name.
    s.http("REST: write without a token", "POST", api + "/workloads", 401, "Authorization",
           body=as_json(workload("w-anon")), headers=js, token=False)
    s.http("REST: cross-origin text/plain write without a token", "POST", api + "/workloads", 401, "Authorization",
           body=as_json(workload("w-csrf")), headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
           token=False)
    s.http("REST: text/plain write with a token", "POST", api + "/workloads", 415, "Content-Type",
           body=as_json(workload("w-plain")), headers={"Content-Type": "text/plain"})
    s.http("REST: write from a foreign Origin", "POST", api + "/workloads", 403, "Origin",
           body=as_json(workload("w-origin")), headers=dict(js, Origin="http://evil.example"))
    s.http("REST: foreign Host (DNS rebinding)", "GET", api + "/nodes", 421, "Host",
           headers={"Host": f"evil.example:{s.cloud.port}"})
    s.http("REST: unknown token", "GET", api + "/nodes", 401, "Authorization",
           headers={"Authorization": "Bearer " + "0" * 64})
    s.http("REST: body over 1 MiB", "POST", api + "/workloads", 413, "body: larger than 1048576 bytes",
           body=b"{" + b" " * (2 << 20) + b"}", headers=js)
    s.http("REST: cluster garbage", "POST", api + "/clusters", 400, "", body=b"[]", headers=js)
    s.http("REST: optimize k=0", "POST", api + "/edge/optimize?k=0", 400, "k",
           body=as_json(workload("w-opt")), headers=js)
    s.http("REST: metrics from=abc", "GET", api + f"/nodes/{NODE}/metrics?from=abc", 400, "from")
    s.http("REST: metrics resolution=5m", "GET", api + f"/nodes/{NODE}/metrics?resolution=5m", 400, "resolution")
    s.http("REST: unknown route", "GET", api + "/bogus", 404, "no such resource")
    s.http("REST: unknown method", "PUT", api + "/workloads", 404, "no such resource", body=b"{}", headers=js)
    s.http("REST: unknown node id", "GET", api + "/nodes/" + "z" * 300, 404, "is not known")
    s.http("REST: workload id with a NUL byte", "GET", api + "/workloads/%00..", 404, "is not known")
    s.http("REST: workload id with invalid UTF-8", "GET", api + "/workloads/w-%ff%fe", 404, "")
    s.http("REST: node id with invalid UTF-8", "GET", api + "/nodes/%ff", 404, "")
    s.http("REST: delete a cluster id with invalid UTF-8", "DELETE", api + "/clusters/c-%ff", 404, "")
    s.http("REST: delete unknown workload", "DELETE", api + "/workloads/w-none", 404, "is not known")
    s.http("REST: delete unknown cluster", "DELETE", api + "/clusters/c-none", 404, "is not known")


def final_checks(s):
    """After all of it: good input is still served, end to end."""
    # A good reading becomes its sensor gauge in a metrics batch going up, and nova-cloud
    # stores and acknowledges that batch (so no earlier batch was refused: the watermark
    # moves only over contiguous seqs).
    mark = s.watch.mark()
    s.pub.publish(SENSOR_PREFIX + "good", as_json({"v": 1, "ts": now_ms(), "values": {"after": 42.0}}))
    seq = {}

    def carries_gauge(topic, payload):
        if topic != f"nova/v1/up/{NODE}/metrics":
            return False
        try:
            b = cbor2.loads(payload)
        except (ValueError, cbor2.CBORDecodeError):
            return False
        if any("sensor.good.after" in smp.get("extra", {}) for smp in b.get("samples", [])):
            seq["seq"] = b["seq"]
            return True
        return False

    got = s.watch.wait_for(carries_gauge, 25, mark)
    s.report.case("agent: a good reading afterwards", "gauge sensor.good.after in a metrics batch going up",
                  got is not None, f"batch seq {seq.get('seq')}" if got else "no batch carried it")
    # Every batch up to the one just seen has gone up: did one carry the quiet sensor?
    quiet = s.watch.count(lambda t, p: t == f"nova/v1/up/{NODE}/metrics" and b"sensor.quiet.q" in p, s.quiet_mark)
    s.report.case("sensor: a quiet sensor's reading after another's flood of 256 gauges",
                  "gauge sensor.quiet.q in a metrics batch going up", got is not None and quiet > 0,
                  f"{quiet} batches carried it" if got else "no batch to judge by")
    if got:
        def acked():
            status, node, _ = s.cloud.request("GET", f"/api/v1/nodes/{NODE}")
            w = node.get("watermarks", {}).get("metrics", 0) if status == 200 and isinstance(node, dict) else 0
            return w if w >= seq["seq"] else None
        w = wait_until(acked, 15)
        s.report.case("agent->cloud: that batch stored and acked", f"gw-h metrics watermark >= {seq['seq']}",
                      w is not None, f"watermark {w}")

    # A hostile client's own valid record: stored and acked on its down topic.
    mark = s.watch.mark()
    s.pub.publish("nova/v1/up/h-probe/state", as_cbor(birth("h-probe")))
    s.pub.publish("nova/v1/up/h-probe/metrics", as_cbor(batch("h-probe", 1)))

    def ack_covers(topic, payload):
        if topic != f"nova/v1/down/{SITE}/h-probe/ack":
            return False
        message = s.signer.open(payload)  # nova-cloud signs its acks
        try:
            return message is not None and cbor2.loads(message).get("watermarks", {}).get("metrics", 0) >= 1
        except (ValueError, cbor2.CBORDecodeError, AttributeError):
            return False

    ack = s.watch.wait_for(ack_covers, 10, mark)
    s.report.case("cloud: a valid record afterwards", "stored and acked (ack watermark metrics >= 1)",
                  ack is not None, "acked" if ack else "no ack")

    # A valid workload through REST is placed on gw-h, its task runs, the result ends it.
    status, body, raw = s.cloud.request("POST", "/api/v1/workloads", as_json(workload("w-final")),
                                        {"Content-Type": "application/json"})

    def phase():
        _, w, _ = s.cloud.request("GET", "/api/v1/workloads/w-final")
        return w.get("phase") if isinstance(w, dict) and w.get("phase") in ("succeeded", "failed") else None

    end = wait_until(phase, 30) if status == 201 else None
    s.report.case("cloud+agent: a valid workload afterwards", "201, placed on gw-h, task runs, phase succeeded",
                  status == 201 and end == "succeeded", f"HTTP {status}, phase {end}")
    ran = {}
    for topic, payload, _ in s.watch.since(0):
        if topic == f"nova/v1/up/{NODE}/result":
            r = cbor2.loads(payload)
            ran[r.get("task_id")] = r.get("status")
    s.report.case("task: on another node's topic", "never runs; the workload's task after it did",
                  "t-other" not in ran and "w-final.r1" in ran, f"results={ran}")
    s.http("REST: duplicate workload id", "POST", "/api/v1/workloads", 409, "w-final",
           body=as_json(workload("w-final")), headers={"Content-Type": "application/json"})

    # Every undecodable message nova-cloud counted came from this suite: none from the agent.
    n = s.rejected("undecodable")
    s.report.case("cloud: nothing the agent sent was refused", f"records_rejected{{undecodable}} == {s.undecodable_sent}",
                  n == s.undecodable_sent, f"{n}")


def utf8_cases(s):
    # After the final checks: on the code this suite was written against, invalid UTF-8
    # in a JSON reading kills the agent (and the suite then restarts it on a clean
    # session), which would also lose the open batch the final checks look at.
    s.sensor_refused("sensor: JSON invalid UTF-8 inside a string", "s27",
                     b'{"v":1,"ts":1732650000000,"values":{"temp":1.5},"unit":"\xff\xfe"}', "JSON", ANY_FIELD)
    s.sensor_refused("sensor: JSON invalid UTF-8 in a key", "s28",
                     b'{"v":1,"ts":1732650000000,"values":{"te\xffmp":1.5}}', "JSON", ANY_FIELD)
    s.sensor_refused("sensor: JSON invalid UTF-8 outside strings", "s29",
                     b'{"v":1,\xff"ts":1732650000000,"values":{"temp":1.5}}', "JSON", WHOLE)

    s.report.case("agent: still answering after every case", "a bad reading gets its error reply", s.barrier(),
                  "answered" if s.agent.alive() else "agent not running")
    s.report.case("daemons: still running, never restarted", "agent and cloud alive, 0 restarts",
                  s.agent.alive() and s.cloud.alive() and s.agent_restarts == 0 and s.cloud_restarts == 0,
                  f"agent alive={s.agent.alive()} restarts={s.agent_restarts}; "
                  f"cloud alive={s.cloud.alive()} restarts={s.cloud_restarts}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", required=True)
    parser.add_argument("--cloud", required=True)
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (daemon logs) and print its path; or set NOVA_KEEP_TEST_DIRS")
    args = parser.parse_args()
    keep = args.keep or bool(os.environ.get("NOVA_KEEP_TEST_DIRS"))  # as tests/harness does
    workdir = tempfile.mkdtemp(prefix="nova-hostile-")
    started = time.monotonic()
    suite = None
    try:
        suite = Suite(args, workdir)
        for group in (down_cases, sensor_cases, cloud_cases, rest_cases, final_checks, utf8_cases):
            group(suite)
        r = suite.report
        print(f"{r.passed} passed, {len(r.failed)} failed in {time.monotonic() - started:.0f} s", flush=True)
        for name in r.failed:
            print(f"  failed: {name}")
        return 0 if not r.failed else 1
    finally:
        if suite is not None:
            for p in (suite.agent, suite.cloud, suite.broker):
                p.stop(signal.SIGKILL)
        if keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
