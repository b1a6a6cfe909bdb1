#!/usr/bin/env python3
"""Publishes N simulated nodes' births, retained, QoS 1, over one mutual-TLS connection as
the nova-sim identity (sim/README.md's broker grant), for the dashboard's scale test.

Sites: cloud/r<i>/m<j>/a<k> (2 regions x 4 metros x 10 access sites), nodes dev-<n>
(level 5) spread evenly over the 80 access sites. Each birth is a node_state record
(schemas/cddl/node_state.cddl) in CBOR. Exits once the broker acknowledged every one
(PUBACK), 1 on a refused connect or a publish not acknowledged within 60 s.

Usage: inject_births.py --port P --pki DIR --nodes N
Needs Debian's python3-paho-mqtt and python3-cbor2.
"""
import argparse
import ssl
import sys
import threading
import time

import cbor2
import paho.mqtt.client as mqtt


def sites():
    return [f"cloud/r{r}/m{m}/a{a}" for r in range(2) for m in range(4) for a in range(10)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pki", required=True)
    ap.add_argument("--nodes", type=int, required=True)
    args = ap.parse_args()

    acked = threading.Semaphore(0)
    connected = threading.Event()
    client = mqtt.Client(client_id="nova-sim", protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=f"{args.pki}/trust/ca.pem", certfile=f"{args.pki}/identities/nova-sim/cert.pem",
                   keyfile=f"{args.pki}/identities/nova-sim/key.pem", tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_connect = lambda c, u, f, rc: connected.set() if rc == 0 else print(f"connect refused: {rc}", file=sys.stderr)
    client.on_publish = lambda c, u, mid: acked.release()
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    if not connected.wait(10):
        print("not connected within 10 s", file=sys.stderr)
        return 1
    all_sites = sites()
    now = int(time.time() * 1000)
    started = time.monotonic()
    for i in range(args.nodes):
        node = f"dev-{i}"
        birth = {"v": 1, "node": node, "status": "online", "bdseq": 1, "ts": now, "level": 5,
                 "site": all_sites[i % len(all_sites)], "arch": "x86_64", "version": "sim",
                 "res": {"cpu_millis": 1000, "memory_mb": 512, "storage_mb": 1024}}
        client.publish(f"nova/v1/up/{node}/state", cbor2.dumps(birth), qos=1, retain=True)
    for _ in range(args.nodes):
        if not acked.acquire(timeout=60):
            print("a publish was not acknowledged within 60 s", file=sys.stderr)
            return 1
    print(f"published {args.nodes} births in {time.monotonic() - started:.2f} s")
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
