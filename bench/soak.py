#!/usr/bin/env python3
"""Soak: minutes of mixed load on resultd over Redis, with Redis cut twice through a relay.

Starts its own redis-server (free loopback port, temp dir, fsync on every write), a TCP relay in
front of it, and resultd (target/release/resultd, else target/debug/resultd) pointed at the relay.
Client threads loop: PUT a record, PUT its value with ?state=SUCCESS, GET it, GET ?wait=1. Twice
during the run the relay refuses and drops every connection for --cut seconds. At the end every
acknowledged write is checked key by key in Redis.

Reports requests, status counts, transport errors, the longest request, the longest time to a 503,
the time /health/ready took to turn green after each restore, and lost writes (must be 0).
Loopback only; bounded by --seconds; stops everything it started by PID.

    python3 bench/soak.py --seconds 120 --cut 8 --clients 16
"""

import argparse
import collections
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Relay:
    """Forwards 127.0.0.1:port to the upstream Redis port; cut() refuses and drops everything."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.port = free_port()
        self.open = True
        self.conns = []
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port))
        self.server.listen(512)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def cut(self):
        self.open = False
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.conns = []

    def restore(self):
        self.open = True


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.status = collections.Counter()
        self.errors = collections.Counter()
        self.requests = 0
        self.longest = 0.0
        self.longest_503 = 0.0
        self.records = []  # ids whose PUT answered 201
        self.completed = []  # ids whose value PUT answered 200

    def add(self, status, elapsed, error=None):
        with self.lock:
            self.requests += 1
            self.longest = max(self.longest, elapsed)
            if error:
                self.errors[error] += 1
            else:
                self.status[status] += 1
                if status == 503:
                    self.longest_503 = max(self.longest_503, elapsed)


def client_loop(port, app, stats, stop):
    conn = None
    while not stop.is_set():
        rid = str(uuid.uuid4())
        steps = [
            ("PUT", f"/results/{rid}?app={app}", json.dumps({"name": "soak", "request_kwargs_repr": "1"})),
            ("PUT", f"/results/{rid}/value?app={app}&state=SUCCESS", json.dumps({"n": 1, "xs": list(range(20))})),
            ("GET", f"/results/{rid}?app={app}", None),
            ("GET", f"/results/{rid}?app={app}&wait=1", None),
        ]
        for i, (method, path, body) in enumerate(steps):
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
                headers = {"content-type": "application/json"} if body else {}
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException) as e:
                stats.add(0, time.monotonic() - started, type(e).__name__)
                conn = None
                break
            stats.add(status, time.monotonic() - started)
            if i == 0 and status == 201:
                with stats.lock:
                    stats.records.append(rid)
            if i == 1 and status == 200:
                with stats.lock:
                    stats.completed.append(rid)
            if status >= 300:
                break


def wait_ready(port, limit=30.0):
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health/ready")
            if c.getresponse().status == 200:
                return time.monotonic() - started
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.01)
    return None


def redis_check(port, app, records, completed):
    """Counts acknowledged records missing and completions not stored as SUCCESS."""
    done = set(completed)
    lost_records = lost_completions = 0
    with socket.create_connection(("127.0.0.1", port)) as s:
        f = s.makefile("rb")
        for start in range(0, len(records), 500):
            chunk = records[start : start + 500]
            out = b""
            for rid in chunk:
                key = f"{app}.mognet.result.{rid}".encode()
                out += b"*3\r\n$4\r\nHGET\r\n$%d\r\n%s\r\n$5\r\nstate\r\n" % (len(key), key)
            s.sendall(out)
            for rid in chunk:
                line = f.readline()
                if line.startswith(b"$-1"):
                    lost_records += 1
                    continue
                value = f.read(int(line[1:]) + 2)[:-2]
                if rid in done and value != b'"SUCCESS"':
                    lost_completions += 1
    return lost_records, lost_completions


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--cut", type=float, default=8, help="seconds of each of the two cuts")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--command-timeout-ms", type=int, default=2000)
    args = ap.parse_args()
    binary = next((p for p in (f"{ROOT}/target/release/resultd", f"{ROOT}/target/debug/resultd") if os.path.exists(p)), None)
    if binary is None:
        sys.exit("build resultd first: cargo build --release")
    work = tempfile.mkdtemp(prefix="resultd-soak-")
    procs = []
    try:
        rport = free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--dir", work, "--save", "",
             "--appendonly", "yes", "--appendfsync", "always"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        relay = Relay(rport)
        hport = free_port()
        env = dict(os.environ, RESULTD_LISTEN=f"127.0.0.1:{hport}", RESULTD_STORE=f"redis://127.0.0.1:{relay.port}/0",
                   RESULTD_REDIS__COMMAND_TIMEOUT_MS=str(args.command_timeout_ms), RESULTD_LOG__FILTER="warn")
        procs.append(subprocess.Popen([binary, "serve"], env=env, stderr=open(f"{work}/resultd.log", "w")))
        if wait_ready(hport) is None:
            sys.exit("resultd did not become ready")
        app = "soak"
        stats, stop = Stats(), threading.Event()
        threads = [threading.Thread(target=client_loop, args=(hport, app, stats, stop)) for _ in range(args.clients)]
        for t in threads:
            t.start()
        started = time.monotonic()
        recoveries = []
        for at in (args.seconds / 3, 2 * args.seconds / 3):
            time.sleep(max(0.0, started + at - time.monotonic()))
            relay.cut()
            time.sleep(args.cut)
            relay.restore()
            recoveries.append(wait_ready(hport))
        time.sleep(max(0.0, started + args.seconds - time.monotonic()))
        stop.set()
        for t in threads:
            t.join(timeout=30)
        elapsed = time.monotonic() - started
        lost_records, lost_completions = redis_check(rport, app, stats.records, stats.completed)
        report = {
            "seconds": round(elapsed, 1),
            "clients": args.clients,
            "requests": stats.requests,
            "statuses": dict(sorted(stats.status.items())),
            "transport_errors": dict(stats.errors),
            "longest_request_s": round(stats.longest, 3),
            "longest_to_503_s": round(stats.longest_503, 3),
            "ready_after_restore_s": [None if r is None else round(r, 3) for r in recoveries],
            "acknowledged_records": len(stats.records),
            "acknowledged_completions": len(stats.completed),
            "lost_records": lost_records,
            "lost_completions": lost_completions,
        }
        print(json.dumps(report, indent=2))
        if lost_records or lost_completions:
            sys.exit(1)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
