"""Shared helpers of the Celery interop scripts: arguments, a stdlib HTTP client, the Celery wiring
(the app of `tasks.py`, the worker check, raw keys), the channel gauge and the JSON report the Rust
tests read.

Every script takes `--redis URL --resultd URL [--key-prefix P] [--compression C]`, runs named
checks and prints one JSON report as its last line of stdout, in the shape of `interop/common.py`:
`{"script", "passed", "failed", "skipped", "failures": [{"name", "detail"}], "skips": [...],
"measurements": {...}}`. The environment of `tasks.py` is set from the arguments before it is
imported, so the scripts build the same app as the worker.
"""

import argparse
import faulthandler
import json
import os
import re
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Optional

# Celery's ready states and resultd's common state for each native one.
READY = {"SUCCESS", "FAILURE", "REVOKED"}
COMMON_STATE = {
    "PENDING": "PENDING",
    "RECEIVED": "PENDING",
    "STARTED": "RUNNING",
    "RETRY": "SUSPENDED",
    "SUCCESS": "SUCCESS",
    "FAILURE": "FAILURE",
    "REVOKED": "REVOKED",
}
# The top-level keys of a stored record that resultd names; any other key goes to `extra`.
NAMED_KEYS = {"status", "result", "traceback", "children", "date_done", "group_id", "parent_id",
              "task_id"}
EXTENDED_KEYS = ("name", "args", "kwargs", "worker", "retries", "queue")
# Celery's key order of a stored record (`_get_result_meta` then `task_id`), absent keys skipped.
CELERY_KEY_ORDER = ["status", "result", "traceback", "children", "date_done", "group_id",
                    "parent_id", *EXTENDED_KEYS, "task_id"]
COMPRESSED_MAGIC = b"\x00celery-compressed\x00"


def common_state(status: str) -> str:
    """resultd's common state for a native Celery status (custom states are RUNNING)."""
    return COMMON_STATE.get(status, "RUNNING")


def parse_args(description: str, extra: Optional[Callable] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--redis", required=True, help="Redis URL with the database: broker and result backend")
    p.add_argument("--resultd", required=True, help="resultd base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--global-keyprefix", default="",
                   help="Celery's global_keyprefix as configured (resultd's key_prefix is the final form)")
    p.add_argument("--compression", default="", help="Celery's result_compression (e.g. gzip), empty for none")
    if extra:
        extra(p)
    args = p.parse_args()
    os.environ["CELERY_BROKER_URL"] = args.redis
    os.environ["CELERY_RESULT_BACKEND"] = args.redis
    os.environ["CELERY_RESULT_COMPRESSION"] = args.compression
    os.environ["CELERY_GLOBAL_KEYPREFIX"] = args.global_keyprefix
    args.key_prefix = final_prefix(args.global_keyprefix)
    return args


def final_prefix(global_keyprefix: str) -> str:
    """The prefix Celery 5.5+ puts in front of its keys: `_` appended unless it ends in `: _ - .`."""
    if global_keyprefix and global_keyprefix[-1] not in ":_-.":
        return global_keyprefix + "_"
    return global_keyprefix


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


NO_BODY = object()


class Http:
    """A tiny resultd client over urllib."""

    def __init__(self, base: str, timeout: float = 90.0):
        self.base = base.rstrip("/")
        self.timeout = timeout

    def url(self, path: str, **query) -> str:
        q = {k: v for k, v in query.items() if v is not None}
        return f"{self.base}{path}" + (f"?{urllib.parse.urlencode(q)}" if q else "")

    def call(self, method: str, path: str, body: Any = NO_BODY, *, headers: Optional[dict] = None,
             timeout: Optional[float] = None, **query) -> Response:
        data = None
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

    def post(self, path, body=NO_BODY, **kw):
        return self.call("POST", path, body, **kw)

    def result(self, task_id: str, **kw) -> Response:
        return self.get("/celery/results/" + urllib.parse.quote(task_id, safe=""), **kw)

    def events(self, path: str, timeout: float = 60.0) -> list:
        """The Server-Sent Events of `path` until the server ends the stream: `[{event, id, data}]`."""
        req = urllib.request.Request(self.url(path), headers={"Accept": "text/event-stream"})
        events, current = [], {}
        with urllib.request.urlopen(req, timeout=timeout) as r:
            for line in r:
                line = line.decode().rstrip("\r\n")
                if not line:
                    if current:
                        events.append(current)
                    current = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    current[name] = value[1:] if value.startswith(" ") else value
        if current:
            events.append(current)
        return events

    def channels(self) -> Optional[int]:
        """`resultd_celery_channels` from /metrics (None when absent)."""
        text = self.get("/metrics").body.decode()
        m = re.search(r"^resultd_celery_channels(?:\{[^}]*\})? (\S+)$", text, re.M)
        return int(float(m.group(1))) if m else None


class Background:
    """A call run on its own thread; `join()` answers its value or re-raises its exception."""

    def __init__(self, fn: Callable, *args, **kwargs):
        self.value: Any = None
        self.exc: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self.thread.start()

    def _run(self, fn, args, kwargs):
        try:
            self.value = fn(*args, **kwargs)
        except BaseException as e:  # handed to join()
            self.exc = e

    def join(self, timeout: float = 90.0) -> Any:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"still running after {timeout}s")
        if self.exc is not None:
            raise self.exc
        return self.value


def eventually(check: Callable[[], Any], limit: float = 30.0, every: float = 0.02) -> Any:
    """Polls `check` until it answers something truthy (answered) or `limit` s pass (the last answer)."""
    deadline = time.monotonic() + limit
    while True:
        got = check()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(every)


# ---------------------------------------------------------------------------------------------
# Celery wiring


def celery_app():
    """The app of `tasks.py`, configured from the environment `parse_args` set."""
    import tasks  # noqa: PLC0415 (the environment must be set first)

    return tasks


def wait_for_worker(app, limit: float = 60.0) -> bool:
    """True once a worker answers a ping."""
    return bool(eventually(lambda: app.control.ping(timeout=0.5), limit, every=0.2))


def task_key(prefix: str, task_id: str) -> str:
    return f"{prefix}celery-task-meta-{task_id}"


def group_key(prefix: str, group_id: str) -> str:
    return f"{prefix}celery-taskset-meta-{group_id}"


def stored_meta(app, raw: Optional[bytes]) -> Optional[dict]:
    """A stored value decoded by Celery's own backend (compression marker included)."""
    if raw is None:
        return None
    return app.backend.decode(raw)


def key_order(app, raw: bytes) -> list:
    """The top-level keys of a stored value in the order they were written."""
    return list(app.backend.decode(raw).keys())


def parse_ts(s: Optional[str]) -> Optional[datetime]:
    if s is None:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def percentile(values: list, p: float) -> Optional[float]:
    """The nearest-rank percentile of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(p / 100.0 * len(ordered) + 0.5))))
    return ordered[rank - 1]


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


def case(rep: Report, label: str, body: Callable[[], None]) -> None:
    """Runs one block of checks; an exception is one failure and does not hide the others."""
    try:
        body()
    except Exception as e:  # noqa: BLE001
        rep.error(label, e)


def start_watchdog(rep: Report, seconds: float = 200.0) -> None:
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
