"""Shared pieces of the benchmarks: a raw RESP client, mognet's record bytes, small helpers.

Standard library only (Python 3.11). Everything talks to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket
import statistics
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

LOOPBACK = "127.0.0.1"

# Fixed ids of the throughput records (mognet's str(uuid) form).
ID_B100 = "00000000-0000-4000-8000-00000000b100"
ID_B10K = "00000000-0000-4000-8000-00000000b10c"
ID_PUT = "00000000-0000-4000-8000-0000000000f0"
ID_RUNNING = "00000000-0000-4000-8000-0000000000a1"
# The cold set: COLD_ID_FORMAT.format(n=n) for n in 0..count-1.
COLD_ID_FORMAT = "00000000-0000-4000-8001-{n:012x}"


def cold_id(n: int) -> str:
    """The id of the n-th record of the cold set."""
    return COLD_ID_FORMAT.format(n=n)


# The kit's b100 hash (run_bench.sh seed), as the baselines' cold set repeats it under res:c{n}.
KIT_B100_FIELDS = {
    "status": "done",
    "task_name": "x" * 10,
    "worker": "w-1234567",
    "created_at": "1700000000",
    "started_at": "1700000001",
    "finished_at": "1700000002",
    "content_type": "text/plain",
    "encoding": "identity",
    "size": "100",
    "retries": "0",
}

# The kit's PUT body (run_bench.sh, put.lua): 10 string fields, ~220 B.
KIT_PUT_BODY = (
    '{"status":"running","task_name":"xxxxxxxxxx","worker":"w-1234567","created_at":"1700000000",'
    '"started_at":"1700000001","finished_at":"1700000002","content_type":"text/plain",'
    '"encoding":"identity","size":"100","retries":"0"}'
)


# ---------------------------------------------------------------- RESP
def _command(*args: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespError(Exception):
    """An error reply from Redis."""


class Redis:
    """A minimal blocking RESP2 client on one socket (pipelining supported)."""

    def __init__(self, port: int, host: str = LOOPBACK, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2 :]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ConnectionError(f"bad RESP line {line[:40]!r}")

    def pipeline(self, commands: list[tuple]) -> list:
        """Sends every command at once and reads every reply; raises on the first error reply."""
        replies = []
        for start in range(0, len(commands), 2000):
            batch = commands[start : start + 2000]
            self.sock.sendall(b"".join(_command(*c) for c in batch))
            replies.extend(self._reply() for _ in batch)
        for r in replies:
            if isinstance(r, RespError):
                raise r
        return replies

    def call(self, *args):
        """One command, one reply."""
        return self.pipeline([args])[0]


class AsyncRedis:
    """A minimal asyncio RESP2 client for simple replies (one command at a time)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> AsyncRedis:
        """Opens a connection to 127.0.0.1:port."""
        r, w = await asyncio.open_connection(LOOPBACK, port)
        return cls(r, w)

    async def call(self, *args) -> bytes:
        """Sends a command and returns the raw first reply line (enough for HSET/SET/DEL)."""
        self.writer.write(_command(*args))
        await self.writer.drain()
        line = await self.reader.readline()
        if line.startswith(b"-"):
            raise RespError(line.decode(errors="replace"))
        return line

    def close(self) -> None:
        """Closes the connection."""
        self.writer.close()


def command_calls(r: Redis) -> dict[str, int]:
    """`INFO commandstats` as {command: calls}."""
    text = r.call("INFO", "commandstats").decode()
    calls = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_") :].split(":", 1)
            fields = dict(kv.split("=", 1) for kv in rest.split(","))
            calls[name] = int(fields["calls"])
    return calls


# ---------------------------------------------------------------- mognet bytes
def mognet_timestamp(t: datetime) -> str:
    """pydantic's datetime form as mognet stores it: 2026-11-23T00:33:03.371156Z."""
    s = t.astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    return s + "Z"


def result_key(app: str, rid: str, sub: str = "") -> str:
    """mognet's result key, or one of its subkeys (value, metadata, children)."""
    return f"{app}.mognet.result.{rid}" + (f"/{sub}" if sub else "")


def record_fields(rid: str, state: str, kwargs_repr: str, now: datetime | None = None) -> dict[str, str]:
    """The 11 cells of a result hash, each JSON as mognet writes it (stdlib json.dumps)."""
    now = now or datetime.now(timezone.utc)
    ts = json.dumps(mognet_timestamp(now))
    done = state in ("SUCCESS", "FAILURE", "REVOKED", "INVALID")
    started = state != "PENDING"
    return {
        "id": json.dumps(rid),
        "name": json.dumps("demo.add"),
        "state": json.dumps(state),
        "number_of_starts": "1" if started else "0",
        "number_of_stops": "1" if done else "0",
        "parent_id": "null",
        "created": ts,
        "started": ts if started else "null",
        "finished": ts if done else "null",
        "node_id": json.dumps("1234@host-a"),
        "request_kwargs_repr": json.dumps(kwargs_repr),
    }


def value_fields(holder: bytes, compress: bool) -> dict[str, bytes]:
    """A value hash: gzip contents as Python's gzip.compress writes them, or plain."""
    return {
        "contents": gzip.compress(holder) if compress else holder,
        "encoding": b'"gzip"' if compress else b"null",
        "content_type": b'"application/json"',
    }


def hset_args(key: str, fields: dict) -> tuple:
    """HSET key f1 v1 f2 v2 ..."""
    args: list = ["HSET", key]
    for k, v in fields.items():
        args += [k, v]
    return tuple(args)


def record_of_size(rid: str, total: int, state: str = "SUCCESS") -> dict[str, str]:
    """A record whose 11 cell values total about `total` bytes (padding the kwargs repr)."""
    base = record_fields(rid, state, "1, b=2")
    size = sum(len(v.encode()) for v in base.values())
    pad = max(0, total - size)
    return record_fields(rid, state, "1, b=2" + ("k" * pad))


def holder_of_size(total: int) -> bytes:
    """A `builtins:list` holder of about `total` bytes of rows, realistic to compress (~2:1)."""
    rows, i = [], 0
    while True:
        h = hashlib.sha256(b"row%d" % i).hexdigest()
        rows.append({"i": i, "sha": h[:32], "score": int(h[32:40], 16) / 1e6})
        body = json.dumps({"value_type": "builtins:list", "raw_value": rows}, separators=(",", ":"))
        if len(body) >= total:
            rows.pop()
            break
        i += 1
    holder = json.dumps({"value_type": "builtins:list", "raw_value": rows}, separators=(",", ":"))
    return holder.encode()


def small_holder(total: int) -> bytes:
    """A `builtins:str` holder of exactly `total` bytes."""
    head = '{"value_type":"builtins:str","raw_value":"'
    tail = '"}'
    return (head + "v" * (total - len(head) - len(tail)) + tail).encode()


def resultd_put_body() -> str:
    """A mognet record body for resultd's PUT, padded to the kit's body length."""

    def body(pad: int) -> str:
        return json.dumps(
            {
                "name": "demo.add",
                "state": "RUNNING",
                "node_id": "1234@host-a",
                "request_kwargs_repr": "1, b=2" + "k" * pad,
            },
            separators=(",", ":"),
        )

    return body(max(0, len(KIT_PUT_BODY) - len(body(0))))


# ---------------------------------------------------------------- misc
def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 5.0):
    """One request; returns (status, headers, body) and never raises on HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def wait_http(url: str, seconds: float = 30.0) -> None:
    """Waits until `url` answers anything."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            http("GET", url, timeout=1.0)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def median(xs):
    """The median, or None for no data."""
    return statistics.median(xs) if xs else None


def percentile(sorted_xs: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_xs:
        return float("nan")
    k = max(0, min(len(sorted_xs) - 1, int(round(p / 100.0 * len(sorted_xs) + 0.5)) - 1))
    return sorted_xs[k]
