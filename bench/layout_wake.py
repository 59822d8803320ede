#!/usr/bin/env python3
"""Wake latency of an HTTP long poll per layout: the time from a foreign writer's command to
the last byte of the answer of a wait that was already held.

For each layout, --waits times, one after another: the record is put in a not-done state, an
HTTP long poll (`?wait=30`, raw HTTP/1.1) is sent and held for a random 20-60 ms, then a raw
RESP client writes the final state the way that layout's own writer does:
- mognet: `HSET {app}.mognet.result.{id} state "SUCCESS"` (no publish; keyspace `h` events);
- celery: `MULTI SETEX celery-task-meta-{id} 86400 {meta} PUBLISH … EXEC` (Celery's `_set`);
- omniq: `SET omniq:results:result:{id} {msgspec JSON}` (keyspace `$` events);
- rigatoni: `SET rigatoni:resume_token:{name} {BSON}` (a changed token; `?wait` with If-None-Match).
Reports p50, p99 and max in milliseconds per layout as JSON. Standard library only, loopback only.

Usage: layout_wake.py --redis-port N --resultd-port P [--waits 200] [--layouts mognet,celery,omniq,rigatoni]
"""

import argparse
import json
import random
import socket
import struct
import threading
import time
import uuid


def resp(*parts: bytes) -> bytes:
    out = b"*%d\r\n" % len(parts)
    for p in parts:
        out += b"$%d\r\n%s\r\n" % (len(p), p)
    return out


class Redis:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in b"+-:":
            return rest
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            return [self._reply() for _ in range(max(int(rest), 0))]
        raise ValueError(line)

    def send(self, *commands):
        """Sends the commands in one write; returns the time just before it and the replies."""
        payload = b"".join(resp(*c) for c in commands)
        sent = time.perf_counter()
        self.sock.sendall(payload)
        return sent, [self._reply() for _ in commands]


def http_wait(port: int, path: str, headers: dict, out: dict, ready: threading.Event):
    s = socket.create_connection(("127.0.0.1", port), timeout=40)
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    s.sendall(head.encode())
    ready.set()
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    out["done"] = time.perf_counter()
    out["status"] = int(data.split(b" ", 2)[1]) if data else 0
    out["body"] = data.split(b"\r\n\r\n", 1)[-1]
    s.close()


def bson_token(data: str) -> bytes:
    name = b"_data\x00"
    value = data.encode() + b"\x00"
    body = b"\x02" + name + struct.pack("<i", len(value)) + value + b"\x00"
    return struct.pack("<i", len(body) + 4) + body


def http_get(port: int, path: str):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    etag = None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"etag:"):
            etag = line.split(b":", 1)[1].strip().decode()
    return int(head.split(b" ", 2)[1]), etag, body


def one(layout: str, r: Redis, port: int):
    """Prepares one not-done record, holds a wait on it, writes the final state: seconds."""
    tid = str(uuid.uuid4())
    headers = {}
    if layout == "mognet":
        key = f"bench.mognet.result.{tid}".encode()
        r.send((b"HSET", key, b"id", json.dumps(tid).encode(), b"state", b'"RUNNING"'))
        path = f"/results/{tid}?app=bench&wait=30"
        final = [(b"HSET", key, b"state", b'"SUCCESS"')]
    elif layout == "celery":
        key = f"celery-task-meta-{tid}".encode()
        started = json.dumps({"status": "STARTED", "result": None, "traceback": None, "children": [], "date_done": None, "task_id": tid}).encode()
        r.send((b"SET", key, started))
        path = f"/celery/results/{tid}?wait=30"
        meta = json.dumps({"status": "SUCCESS", "result": 4, "traceback": None, "children": [], "date_done": "2026-12-04T00:00:00+00:00", "task_id": tid}).encode()
        final = [(b"MULTI",), (b"SETEX", key, b"86400", meta), (b"PUBLISH", key, meta), (b"EXEC",)]
    elif layout == "omniq":
        task = json.dumps({"func": "f", "id": tid, "status": "running"}, separators=(",", ":")).encode()
        r.send((b"SET", f"omniq:tasks:task:{tid}".encode(), task))
        path = f"/omniq/results/{tid}?wait=30"
        result = json.dumps({"task_id": tid, "status": "success", "result": 4, "error": None, "error_type": None, "traceback": None, "created_at": "2026-12-04T00:00:00", "started_at": None, "completed_at": None, "ttl": None, "expires_at": None, "worker_id": None, "execution_time": None, "memory_usage": None, "metadata": {}}, separators=(",", ":")).encode()
        final = [(b"SET", f"omniq:results:result:{tid}".encode(), result)]
    elif layout == "rigatoni":
        name = f"bench:{tid}"
        key = f"rigatoni:resume_token:{name}".encode()
        r.send((b"SET", key, bson_token("8200000001")))
        status, etag, _ = http_get(port, f"/rigatoni/resume-tokens/{name}")
        if status != 200 or not etag:
            raise RuntimeError(f"rigatoni read answered {status}")
        headers["If-None-Match"] = etag
        path = f"/rigatoni/resume-tokens/{name}?wait=30"
        final = [(b"SET", key, bson_token("8200000002"))]
    else:
        raise ValueError(layout)
    out, ready = {}, threading.Event()
    t = threading.Thread(target=http_wait, args=(port, path, headers, out, ready))
    t.start()
    ready.wait(5)
    time.sleep(random.uniform(0.02, 0.06))
    sent, _ = r.send(*final)
    t.join(40)
    if out.get("status") != 200:
        raise RuntimeError(f"{layout}: the wait answered {out.get('status')}: {out.get('body', b'')[:200]!r}")
    return out["done"] - sent


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--resultd-port", type=int, required=True)
    ap.add_argument("--waits", type=int, default=200)
    ap.add_argument("--layouts", default="mognet,celery,omniq,rigatoni")
    a = ap.parse_args()
    r = Redis(a.redis_port)
    report = {}
    for layout in a.layouts.split(","):
        for _ in range(5):
            one(layout, r, a.resultd_port)
        lat = [one(layout, r, a.resultd_port) * 1000 for _ in range(a.waits)]
        report[layout] = {"waits": len(lat), "p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2), "max_ms": round(max(lat), 2)}
        print(f"{layout:9} p50 {report[layout]['p50_ms']:7.2f} ms  p99 {report[layout]['p99_ms']:7.2f} ms  max {report[layout]['max_ms']:7.2f} ms", flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
