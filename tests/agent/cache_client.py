#!/usr/bin/python3
"""A task's client of nova-agent's cache socket (docs/agent.md, Cache), written with
python3's socket module only: what cache_process_test.cpp runs as its tasks.

  cache_client.py fill    big values through the budget, origin reads, prefetch, errors
  cache_client.py after   reads what `fill` stored (after the agent was killed)

Prints one line per step, "<step> <answer>", for the test to read.
"""
import os
import socket
import sys
import time


class Cache:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""

    def _line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the agent closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def _body(self, n):
        while len(self.buf) < n:
            self.buf += self.sock.recv(65536)
        body, self.buf = self.buf[:n], self.buf[n:]
        return body

    def ask(self, request, value=b""):
        self.sock.sendall(request.encode() + b"\n" + value)
        line = self._line()
        if line.startswith("VALUE "):
            return "VALUE " + self._body(int(line.split()[1])).decode()
        return line

    def get(self, key):
        return self.ask("GET " + key)

    def put(self, key, value):
        return self.ask("PUT %s %d" % (key, len(value)), value)

    def stats(self):
        line = self.ask("STATS")
        return dict(kv.split("=") for kv in line.split()[1:])


def main():
    c = Cache(os.environ["NOVA_CACHE_SOCKET"])
    if sys.argv[1] == "fill":
        for i in range(40):  # 2.5 MiB through the test's 1 MiB budget
            c.put("big/%02d" % i, b"x" * 65536)
        print("first", c.get("seq/0000"))  # a miss, read through from the origin
        print("second", c.get("seq/0001"))  # a miss; now the stride is known
        deadline = time.monotonic() + 10  # prefetch runs on the agent's own thread
        while int(c.stats()["prefetches"]) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        for i in range(2, 6):
            print("next", c.get("seq/%04d" % i))
        print("absent", c.get("nope/x"))
        print("bad", c.ask("GET a b"))
        print("put", c.put("own/a", b"alpha"))
        print("own", c.get("own/a"))
    else:
        print("own", c.get("own/a"))
        print("next", c.get("seq/0005"))
    print("stats", " ".join("%s=%s" % kv for kv in c.stats().items()))


main()
