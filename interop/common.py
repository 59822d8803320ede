"""Shared helpers of the interop scripts: arguments, a stdlib HTTP client, mognet wiring and the
JSON report the Rust tests read.

Every script takes `--redis URL --resultd URL --app NAME`, runs named checks and prints one JSON
report as its last line of stdout:
`{"script", "passed", "failed", "skipped", "failures": [{"name", "detail"}], "skips": [...],
"measurements": {...}}`.
"""

import argparse
import faulthandler
import os
import threading
import gzip
import json
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

import redis as syncredis
from mognet import App, AppConfig
from mognet.backend.redis_result_backend import RedisResultBackend
from mognet.broker.memory_broker import InMemoryBroker
from mognet.state.redis_state_backend import RedisStateBackend

# What the state checks answer while resultd has no /state routes yet.
STATE_ROUTE_MISSING = "resultd has no /state routes yet (404 not-found)"

# mognet's value holder media type for uploads of full holders.
HOLDER_MEDIA_TYPE = "application/vnd.mognet.value+json"


def parse_args(description: str, extra=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--redis", required=True, help="Redis URL with the database, as result_backend.redis.url")
    p.add_argument("--resultd", required=True, help="resultd base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--app", required=True, help="the mognet App(name=...)")
    if extra:
        extra(p)
    return p.parse_args()


# ---------------------------------------------------------------------------------------------
# HTTP (stdlib only)


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes
    elapsed: float
    received_at: float

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())

    def problem_code(self) -> Optional[str]:
        if not (self.header("content-type") or "").startswith("application/problem+json"):
            return None
        try:
            return self.json().get("code")
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:300]!r}>"


# "No body", as opposed to a JSON `null` body.
NO_BODY = object()


class Http:
    """A tiny resultd client over urllib; every path gets `?app=`."""

    def __init__(self, base: str, app: str, timeout: float = 60.0):
        self.base = base.rstrip("/")
        self.app = app
        self.timeout = timeout

    def url(self, path: str, **query) -> str:
        q = {"app": self.app}
        q.update({k: v for k, v in query.items() if v is not None})
        return f"{self.base}{path}?{urllib.parse.urlencode(q)}"

    def call(self, method: str, path: str, body: Any = NO_BODY, *, raw: Optional[bytes] = None,
             headers: Optional[dict] = None, timeout: Optional[float] = None, **query) -> Response:
        data = raw
        hdrs = dict(headers or {})
        if body is not NO_BODY:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url(path, **query), data=data, method=method, headers=hdrs)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as r:
                payload = r.read()
                status, rh = r.status, r.headers
        except urllib.error.HTTPError as e:
            payload = e.read()
            status, rh = e.code, e.headers
        received = time.time()
        return Response(status, {k.lower(): v for k, v in rh.items()}, payload,
                        time.monotonic() - started, received)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def put(self, path, body=NO_BODY, **kw):
        return self.call("PUT", path, body, **kw)

    def patch(self, path, body=NO_BODY, **kw):
        return self.call("PATCH", path, body, **kw)

    def post(self, path, body=NO_BODY, **kw):
        return self.call("POST", path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)


def state_routes_available(http: Http) -> bool:
    """False while `/state/...` is an unknown route (404 `not-found`, not `state-not-found`)."""
    r = http.get("/state/%s/interop-probe" % urllib.parse.quote(http.app, safe=""))
    return not (r.status == 404 and r.problem_code() == "not-found")


# ---------------------------------------------------------------------------------------------
# mognet wiring


def mognet_config(redis_url: str, encoding: Optional[str] = "gzip") -> AppConfig:
    return AppConfig.model_validate({
        "result_backend": {"redis": {"url": redis_url, "result_value_encoding": encoding}},
        "state_backend": {"redis": {"url": redis_url}},
        # Never contacted: the broker is replaced by the in-memory one.
        "broker": {"amqp": {"url": "amqp://127.0.0.1:1/"}},
    })


async def connect_backends(redis_url: str, app_name: str, encoding: Optional[str] = "gzip"):
    """An App with mognet's own Redis result and state backends and an in-memory broker, so that
    `App.revoke` works without AMQP. Returns (app, result_backend, state_backend)."""
    cfg = mognet_config(redis_url, encoding)
    app = App(name=app_name, config=cfg)
    rb = RedisResultBackend(cfg.result_backend, app=app)
    sb = RedisStateBackend(cfg.state_backend, app=app)
    await rb.connect()
    await sb.connect()
    app.result_backend, app.state_backend, app.broker = rb, sb, InMemoryBroker()
    return app, rb, sb


def raw_redis(redis_url: str) -> syncredis.Redis:
    return syncredis.Redis.from_url(redis_url)


def result_key(app: str, rid) -> str:
    return f"{app}.mognet.result.{rid}"


def stored_holder(r: syncredis.Redis, app: str, rid) -> Optional[dict]:
    """The value holder exactly as stored in Redis (decoded by mognet's byte rules)."""
    h = r.hgetall(result_key(app, rid) + "/value")
    if not h:
        return None
    contents = h[b"contents"]
    if h.get(b"encoding") == b'"gzip"':
        contents = gzip.decompress(contents)
    return json.loads(contents)


def stored_cells(r: syncredis.Redis, key: str) -> dict:
    """A hash's fields with each JSON cell decoded."""
    return {k.decode(): json.loads(v) for k, v in r.hgetall(key).items()}


def parse_ts(s: Optional[str]) -> Optional[datetime]:
    if s is None:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


# ---------------------------------------------------------------------------------------------
# The report


def same(a: Any, b: Any) -> bool:
    """`a == b` with types compared too, recursively (JSON numbers must not change kind)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@dataclass
class Report:
    script: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list = field(default_factory=list)
    skips: list = field(default_factory=list)
    measurements: dict = field(default_factory=dict)
    names: set = field(default_factory=set)

    def _name(self, name: str) -> str:
        if name in self.names:
            raise AssertionError(f"duplicate check name {name!r}")
        self.names.add(name)
        return name

    def check(self, name: str, ok: bool, detail: Any = "") -> bool:
        self._name(name)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append({"name": name, "detail": str(detail)[:2000]})
        return ok

    def eq(self, name: str, got: Any, want: Any) -> bool:
        """Equal values of the same types all the way down (1 is not 1.0, nor True)."""
        return self.check(name, same(got, want), f"got {got!r}, want {want!r}")

    def skip(self, name: str, reason: str) -> None:
        self._name(name)
        self.skipped += 1
        self.skips.append({"name": name, "reason": reason})

    def error(self, name: str, exc: BaseException) -> None:
        """A check block that raised: counted as one failure named after the block."""
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.check(f"{name}: no exception", False, detail)

    def measure(self, name: str, value: Any) -> None:
        self.measurements[name] = value

    def emit(self) -> None:
        out = {
            "script": self.script,
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "failures": self.failures,
            "skips": self.skips,
            "measurements": self.measurements,
        }
        sys.stdout.flush()
        print(json.dumps(out))


def start_watchdog(rep: "Report", seconds: float = 170.0) -> None:
    """Ends a hung script with a report and every thread's stack on stderr, instead of a silent hang."""

    def fire():
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        rep.check("the script finished within its time limit", False, f"still running after {seconds:.0f}s")
        rep.emit()
        sys.stdout.flush()
        os._exit(1)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
