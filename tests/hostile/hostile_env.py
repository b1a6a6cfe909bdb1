"""The real parts the hostile-client suite talks to, and an independent MQTT client.

Everything here is started fresh for one run, in one temporary directory, and dies with
the test: a Mosquitto on a free loopback port (no persistence: nothing outlives the run),
one nova-agent and one nova-cloud with real config files. The MQTT client is paho-mqtt
(Python), not the project's own client code, so the daemons are judged by what an
outside party sees on the wire.

Waiting: the daemons' logs are files another process writes and their counters are
HTTP resources, so there is no event to block on there; `wait_until` polls such
conditions every 20 ms up to a deadline. MQTT deliveries are waited on with a
condition variable.
"""

import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

POLL_S = 0.02
_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def wait_until(predicate, timeout_s):
    """Returns predicate()'s first truthy value, or None once timeout_s has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)  # a file or an HTTP counter of another process: nothing to block on


class Signer:
    """Signs downward messages as nova-cloud does (schemas/cddl/signed.cddl: COSE_Sign1,
    EdDSA), with python3-cryptography: independent of the project's own signer. The key
    is the fixed test key (seed 32 x 0x4e) of tests/harness and the golden vectors; its
    PEM files are written to `directory` for nova-cloud (key) and nova-agent (pub)."""

    PROTECTED = bytes([0xA1, 0x01, 0x27])  # {1: -8}: alg EdDSA

    def __init__(self, directory):
        self.key = Ed25519PrivateKey.from_private_bytes(bytes([0x4E]) * 32)
        self.key_file = os.path.join(directory, "signing.key")
        self.pub_file = os.path.join(directory, "signing.pub")
        with open(self.key_file, "wb") as f:
            f.write(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        os.chmod(self.key_file, 0o600)
        with open(self.pub_file, "wb") as f:
            f.write(self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
        self.last_iat = 0
        self.count = 0

    def sign(self, topic, message, ttl_ms=600_000):
        """`message` (bytes) in an envelope for the down topic `topic`, issued now."""
        levels = topic.split("/")  # nova/v1/down/<site path...>/<node>/<kind>
        # Strictly increasing: a retained kind's next message must be newer than the last.
        self.last_iat = max(int(time.time() * 1000), self.last_iat + 1)
        self.count += 1
        claims = {"v": 1, "node": levels[-2], "site": "/".join(levels[3:-2]), "kind": levels[-1],
                  "mid": f"hostile-{os.getpid()}-{self.count}", "iat": self.last_iat,
                  "exp": self.last_iat + ttl_ms, "msg": message}
        payload = cbor2.dumps(claims, canonical=True)
        signature = self.key.sign(cbor2.dumps(["Signature1", self.PROTECTED, b"", payload], canonical=True))
        return cbor2.dumps(cbor2.CBORTag(18, [self.PROTECTED, {}, payload, signature]))


    def open(self, envelope):
        """The message inside a signed envelope from nova-cloud, or None when it is not one
        or the signature does not verify with the test key."""
        try:
            cose = cbor2.loads(envelope)
            protected, _, payload, signature = cose.value if isinstance(cose, cbor2.CBORTag) else cose
            self.key.public_key().verify(signature, cbor2.dumps(["Signature1", protected, b"", payload],
                                                                canonical=True))
            return cbor2.loads(payload)["msg"]
        except Exception:  # anything malformed or forged is simply not a signed message
            return None


def free_loopback_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # The child gets SIGKILL when the test dies, however it dies: nothing leaks.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Process:
    """A child process whose stdout+stderr go to a log file that can be searched."""

    def __init__(self, argv, log_path):
        self.argv = argv
        self.log_path = log_path
        self.proc = None
        self.start()

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def exit_status(self):
        """The exit code, -N when killed by signal N, None while running."""
        return None if self.proc is None else self.proc.poll()

    def stop(self, sig=signal.SIGTERM, timeout_s=15):
        if not self.alive():
            return self.exit_status()
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_size(self):
        return os.path.getsize(self.log_path)

    def lines_since(self, offset):
        """The log lines written after byte `offset`."""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace").splitlines()


class Broker(Process):
    def __init__(self, directory):
        self.port = free_loopback_port()
        conf = os.path.join(directory, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
            if os.geteuid() == 0:
                f.write("user root\n")
        super().__init__(["mosquitto", "-c", conf], os.path.join(directory, "mosquitto.log"))
        if not wait_until(self._accepts, 10):
            raise RuntimeError("mosquitto did not accept connections:\n" + self.text()[-2000:])

    def _accepts(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    @property
    def uri(self):
        return f"tcp://127.0.0.1:{self.port}"


class Agent(Process):
    NODE = "gw-h"
    SITE = "cloud/eu/par/par-a1"
    CAPABILITY = "hostile-suite"

    def __init__(self, binary, directory, broker_uri, signer):
        config = os.path.join(directory, "agent.yaml")
        with open(config, "w") as f:
            # plain batches, so this client decodes them with a stock CBOR library; 200 ms
            # samples and the shortest batch interval (10 s); no admission by host load.
            f.write(f"node: {{id: {self.NODE}, site: {self.SITE}, level: 4, capabilities: [{self.CAPABILITY}]}}\n"
                    f"mqtt: {{uri: \"{broker_uri}\", reconnect_min_ms: 100, reconnect_max_ms: 1000}}\n"
                    f"outbox: {{dir: {directory}/outbox}}\n"
                    f"tasks: {{dir: {directory}/tasks, allow: [/bin/true, /bin/echo]}}\n"
                    "metrics: {interval_ms: 200, batch_interval_s: 10, encoding: plain}\n"
                    "drain: {jitter_ms: 0}\n"
                    "limits: {max_cpu_pct: 100, max_memory_pct: 100, min_free_memory_mb: 0}\n"
                    f"trust: {{signing_keys: [{signer.pub_file}]}}\n")
        self.binary = binary
        super().__init__([binary, "--config", config], os.path.join(directory, "agent.log"))

    def count(self, needle):
        return self.text().count(needle)

    def wait_connected(self, connects_before, timeout_s=20):
        return wait_until(lambda: self.count("event=connected") > connects_before, timeout_s)


class Cloud(Process):
    def __init__(self, binary, directory, broker_uri, signer):
        self.port = free_loopback_port()
        config = os.path.join(directory, "cloud.yaml")
        tokens = os.path.join(directory, "tokens")
        # Authentication on, as in production: an admin token every request carries.
        self.token = subprocess.run([binary, "token", "create", "--name", "hostile-admin", "--role", "admin",
                                     "--tokens-file", tokens], check=True, capture_output=True,
                                    text=True).stdout.strip()
        with open(config, "w") as f:
            f.write(f"mqtt:\n  uri: \"{broker_uri}\"\n  client_id: nova-cloud\n"
                    f"store:\n  dir: {directory}/store\nhttp:\n  port: {self.port}\n"
                    f"auth:\n  tokens_file: {tokens}\naudit:\n  file: {directory}/audit.log\n"
                    f"signing:\n  key_file: {signer.key_file}\n")
        super().__init__([binary, "--config", config], os.path.join(directory, "cloud.log"))
        if not wait_until(lambda: self.healthy() or not self.alive(), 10) or not self.alive():
            raise RuntimeError("nova-cloud did not start:\n" + self.text()[-2000:])

    def request(self, method, path, body=None, headers=None, timeout_s=10, token=True):
        """(status, parsed JSON or None, raw body) or (None, None, error text). With the
        admin token unless `token` is False."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        headers = dict(headers or {})
        if token:
            headers.setdefault("Authorization", "Bearer " + self.token)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            return resp.status, parsed, raw
        except (OSError, http.client.HTTPException) as e:
            return None, None, f"{type(e).__name__}: {e}"
        finally:
            conn.close()

    def healthy(self):
        status, body, _ = self.request("GET", "/api/v1/health", timeout_s=2)
        return status == 200 and isinstance(body, dict) and body.get("mqtt_connected") is True

    def metric(self, name, labels=""):
        """The value of one Prometheus series on /metrics (0 when absent, None when unreachable)."""
        status, _, raw = self.request("GET", "/metrics")
        if status != 200:
            return None
        series = name + (("{" + labels + "}") if labels else "")
        for line in raw.decode("utf-8", "replace").splitlines():
            if line.startswith(series + " "):
                return float(line.split(" ")[1])
        return 0.0


class MqttClient:
    """paho-mqtt, MQTT 3.1.1, QoS 1. Keeps every message of its filters for waiting on."""

    _ids = 0

    def __init__(self, port, filters=(), client_id=None, clean_session=True):
        MqttClient._ids += 1
        self.client = mqtt.Client(client_id=client_id or f"hostile-{os.getpid()}-{MqttClient._ids}",
                                  clean_session=clean_session, protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(100)
        self.cond = threading.Condition()
        self.messages = []  # (topic, payload bytes, retained)
        self.granted = {}
        self.connected = False
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        with self.cond:
            if not self.cond.wait_for(lambda: self.connected, 10):
                raise RuntimeError("MQTT connect timed out")
        for f in filters:
            self.subscribe(f)

    def _on_connect(self, client, userdata, flags, rc):
        with self.cond:
            self.connected = rc == 0
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted_qos):
        with self.cond:
            self.granted[mid] = granted_qos
            self.cond.notify_all()

    def subscribe(self, topic_filter):
        rc, mid = self.client.subscribe(topic_filter, qos=1)
        with self.cond:
            ok = rc == mqtt.MQTT_ERR_SUCCESS and self.cond.wait_for(lambda: mid in self.granted, 10)
            # A broker may grant less or refuse (0x80): check every SUBACK.
            if not ok or self.granted[mid][0] != 1:
                raise RuntimeError(f"subscription to {topic_filter} not granted at QoS 1: {self.granted.get(mid)}")

    def publish(self, topic, payload, retain=False):
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)  # PUBACK: the broker has the message
        if not info.is_published():
            raise RuntimeError(f"publish to {topic} was not acknowledged")

    def publish_burst(self, topic, payloads):
        """Publishes all at once (up to 100 in flight), then waits for every PUBACK."""
        infos = [self.client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(10)
        if not all(info.is_published() for info in infos):
            raise RuntimeError(f"a burst publish to {topic} was not acknowledged")

    def count(self, predicate, since=0):
        with self.cond:
            return sum(1 for topic, payload, _ in self.messages[since:] if predicate(topic, payload))

    def wait_count(self, predicate, n, timeout_s, since=0):
        """Waits until n messages at index >= since satisfy predicate; returns the count seen."""
        with self.cond:
            self.cond.wait_for(lambda: self.count(predicate, since) >= n, timeout_s)
            return self.count(predicate, since)

    def mark(self):
        with self.cond:
            return len(self.messages)

    def wait_for(self, predicate, timeout_s, since=0):
        """The first message at index >= since for which predicate(topic, payload) holds."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                for topic, payload, _ in self.messages[since:]:
                    if predicate(topic, payload):
                        return topic, payload
                left = deadline - time.monotonic()
                if left <= 0 or not self.cond.wait(left):
                    if time.monotonic() >= deadline:
                        return None

    def since(self, index):
        with self.cond:
            return list(self.messages[index:])

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
