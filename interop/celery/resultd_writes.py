"""resultd writes, Celery reads.

Results and groups are written over HTTP (`PUT /celery/results/{id}`, `PUT /celery/groups/{id}`)
and read back through Celery 5.7.0's own API: `AsyncResult.get()` returns the value or raises the
stored exception's type with its message, `AsyncResult.state`/`.info`/`.traceback` and the extended
fields agree, `GroupResult.restore(...).get()` answers the members' values. An `AsyncResult.get()`
(and a `GroupResult.get()`) already waiting before the PUT is woken by it: Celery's waiters only
listen on the key's channel, so this proves the PUBLISH. The stored bytes are checked against
Celery's own encoding (kombu's JSON dialect and key order, `result_expires` TTL).
"""

import json
import urllib.parse
import uuid
from datetime import datetime

import redis as syncredis
from celery.exceptions import TaskRevokedError
from celery.result import GroupResult
from kombu.utils.json import dumps as kombu_dumps

from common import (
    COMPRESSED_MAGIC, CELERY_KEY_ORDER, Background, Http, Report, case, celery_app, eventually, group_key,
    key_order, parse_args, start_watchdog, stored_meta, task_key,
)

RESULT_EXPIRES = 86400
TIMEOUT = 30

VALUES = [
    ("int", 42),
    ("dict", {"a": {"b": [1, 2.5, None]}, "ü": "é ✓ \U0001F600", "big": 2 ** 62}),
    ("str", "héllo ✓"),
    ("none", None),
    ("list", [1, "a", None, True]),
    ("bool", False),
    ("float", 3.5),
]


def run(args, rep: Report) -> None:
    tasks = celery_app()
    app = tasks.app
    http = Http(args.resultd)
    r = syncredis.Redis.from_url(args.redis)
    prefix = args.key_prefix

    def put(tid: str, body: dict):
        return http.put("/celery/results/" + urllib.parse.quote(tid, safe=""), body)

    def put_group(gid: str, ids: list):
        return http.put("/celery/groups/" + urllib.parse.quote(gid, safe=""), {"results": ids})

    def stored(tid: str):
        return r.get(task_key(prefix, tid))

    def ttl_near(key: str, want: int) -> bool:
        return want - 60 <= r.ttl(key) <= want

    def written(label: str, tid: str, body: dict, status: int = 201) -> dict:
        resp = put(tid, body)
        rep.eq(f"{label}: PUT answers {status}", resp.status, status)
        answer = resp.json() if resp.status in (200, 201) else {}
        rep.eq(f"{label}: PUT answers the record", (answer.get("task_id"), answer.get("status")),
               (tid, body["status"]))
        return answer

    def encoding(label: str, tid: str) -> None:
        """The stored bytes: Celery's key, key order, kombu's JSON dialect, TTL."""
        value = stored(tid)
        if not rep.check(f"{label}: stored under Celery's key", value is not None, task_key(prefix, tid)):
            return
        meta = stored_meta(app, value)
        rep.eq(f"{label}: Celery's key order", key_order(app, value), [k for k in CELERY_KEY_ORDER if k in meta])
        if not value.startswith(COMPRESSED_MAGIC):
            rep.eq(f"{label}: kombu's JSON dialect", value.decode(), kombu_dumps(json.loads(value)))
        rep.check(f"{label}: TTL is result_expires", ttl_near(task_key(prefix, tid), RESULT_EXPIRES),
                  r.ttl(task_key(prefix, tid)))
        rep.eq(f"{label}: task_id stored", meta.get("task_id"), tid)

    # -- values ---------------------------------------------------------------------------------
    def values():
        for name, value in VALUES:
            tid = str(uuid.uuid4())
            answer = written(f"SUCCESS {name}", tid, {"status": "SUCCESS", "result": value})
            rep.eq(f"SUCCESS {name}: PUT answers the result", answer.get("result"), value)
            res = app.AsyncResult(tid)
            rep.eq(f"SUCCESS {name}: AsyncResult.get()", res.get(timeout=TIMEOUT), value)
            rep.eq(f"SUCCESS {name}: AsyncResult.state", res.state, "SUCCESS")
            encoding(f"SUCCESS {name}", tid)
            got = http.get("/celery/results/" + tid)
            rep.eq(f"SUCCESS {name}: GET answers what PUT did",
                   {k: v for k, v in got.json().items() if k != "ttl"},
                   {k: v for k, v in answer.items() if k != "ttl"})
        tid = str(uuid.uuid4())
        envelope = {"__type__": "datetime", "__value__": "2026-01-02T03:04:05"}
        written("kombu envelope", tid, {"status": "SUCCESS", "result": {"at": envelope}})
        rep.eq("kombu envelope: AsyncResult.get() decodes it", app.AsyncResult(tid).get(timeout=TIMEOUT),
               {"at": datetime(2026, 1, 2, 3, 4, 5)})

    def success_is_final():
        tid = str(uuid.uuid4())
        written("SUCCESS is final", tid, {"status": "SUCCESS", "result": 1})
        resp = put(tid, {"status": "SUCCESS", "result": 2})
        rep.eq("SUCCESS is final: a second PUT answers 409", (resp.status, resp.problem_code()),
               (409, "illegal-transition"))
        resp = put(tid, {"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["x"],
                                                         "exc_module": "builtins"}})
        rep.eq("SUCCESS is final: a FAILURE over it answers 409", resp.status, 409)
        rep.eq("SUCCESS is final: Celery still reads 1", app.AsyncResult(tid).get(timeout=TIMEOUT), 1)

    # -- states -----------------------------------------------------------------------------------
    def failures():
        tid = str(uuid.uuid4())
        tb = 'Traceback (most recent call last):\n  File "worker.rs", line 1\nValueError: bad input\n'
        written("FAILURE", tid, {"status": "FAILURE", "traceback": tb, "result": {
            "exc_type": "ValueError", "exc_message": ["bad input"], "exc_module": "builtins"}})
        res = app.AsyncResult(tid)
        try:
            res.get(timeout=TIMEOUT)
            rep.check("FAILURE: get() raises ValueError", False, "returned")
        except ValueError as e:
            rep.eq("FAILURE: get() raises ValueError", type(e), ValueError)
            rep.eq("FAILURE: with the message", e.args, ("bad input",))
        rep.eq("FAILURE: AsyncResult.state", res.state, "FAILURE")
        rep.eq("FAILURE: AsyncResult.traceback", res.traceback, tb)
        encoding("FAILURE", tid)

        tid = str(uuid.uuid4())
        written("FAILURE of a non-Python type", tid, {"status": "FAILURE", "result": {
            "exc_type": "DiskFull", "exc_message": ["disk full", 3], "exc_module": "rust.worker"}})
        try:
            app.AsyncResult(tid).get(timeout=TIMEOUT)
            rep.check("FAILURE of a non-Python type: get() raises", False, "returned")
        except Exception as e:  # Celery makes up a class of that name
            rep.eq("FAILURE of a non-Python type: get() raises DiskFull", type(e).__name__, "DiskFull")
            rep.eq("FAILURE of a non-Python type: with the message", e.args, ("disk full", 3))

        tid = str(uuid.uuid4())
        written("FAILURE then SUCCESS", tid, {"status": "FAILURE", "result": {
            "exc_type": "RuntimeError", "exc_message": ["once"], "exc_module": "builtins"}})
        written("FAILURE then SUCCESS: replaced", tid, {"status": "SUCCESS", "result": "second"}, status=200)
        rep.eq("FAILURE then SUCCESS: get()", app.AsyncResult(tid).get(timeout=TIMEOUT), "second")

    def running_states():
        tid = str(uuid.uuid4())
        written("STARTED", tid, {"status": "STARTED", "result": {"pid": 7, "hostname": "rust@w1"}})
        res = app.AsyncResult(tid)
        rep.eq("STARTED: AsyncResult.state", res.state, "STARTED")
        rep.eq("STARTED: AsyncResult.info", res.info, {"pid": 7, "hostname": "rust@w1"})
        rep.eq("STARTED: not ready", res.ready(), False)
        written("PROGRESS", tid, {"status": "PROGRESS", "result": {"done": 3, "total": 10}}, status=200)
        rep.eq("PROGRESS: AsyncResult.state", app.AsyncResult(tid).state, "PROGRESS")
        rep.eq("PROGRESS: AsyncResult.info", app.AsyncResult(tid).info, {"done": 3, "total": 10})
        written("RETRY", tid, {"status": "RETRY", "traceback": "RuntimeError: first run\n", "result": {
            "exc_type": "RuntimeError", "exc_message": ["first run"], "exc_module": "builtins"}}, status=200)
        res = app.AsyncResult(tid)
        rep.eq("RETRY: AsyncResult.state", res.state, "RETRY")
        rep.check("RETRY: AsyncResult.info is the exception", isinstance(res.info, RuntimeError), repr(res.info))
        written("STARTED then SUCCESS", tid, {"status": "SUCCESS", "result": 10}, status=200)
        rep.eq("STARTED then SUCCESS: get()", app.AsyncResult(tid).get(timeout=TIMEOUT), 10)
        encoding("STARTED then SUCCESS", tid)

        tid = str(uuid.uuid4())
        written("PENDING", tid, {"status": "PENDING", "result": None})
        rep.eq("PENDING: AsyncResult.state", app.AsyncResult(tid).state, "PENDING")
        rep.eq("PENDING: exists() (the key is there)", app.AsyncResult(tid).exists(), True)

        tid = str(uuid.uuid4())
        written("REVOKED", tid, {"status": "REVOKED", "result": {
            "exc_type": "TaskRevokedError", "exc_message": ["revoked"], "exc_module": "celery.exceptions"}})
        try:
            app.AsyncResult(tid).get(timeout=TIMEOUT)
            rep.check("REVOKED: get() raises TaskRevokedError", False, "returned")
        except TaskRevokedError as e:
            rep.eq("REVOKED: get() raises TaskRevokedError", e.args, ("revoked",))

    def extended():
        tid, parent, group_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
        body = {"status": "SUCCESS", "result": [1, 2], "name": "rust.add", "args": [1, 1],
                "kwargs": {"k": "v"}, "worker": "rust@w1", "retries": 2, "queue": "fast",
                "parent_id": parent, "group_id": group_id, "children": [[["child-1", None], None]]}
        written("extended", tid, body)
        res = app.AsyncResult(tid)
        rep.eq("extended: get()", res.get(timeout=TIMEOUT), [1, 2])
        got = {"name": res.name, "args": res.args, "kwargs": res.kwargs, "worker": res.worker,
               "retries": res.retries, "queue": res.queue}
        rep.eq("extended: AsyncResult's extended fields", got,
               {k: body[k] for k in ("name", "args", "kwargs", "worker", "retries", "queue")})
        meta = app.backend.get_task_meta(tid)
        rep.eq("extended: parent_id and group_id", (meta.get("parent_id"), meta.get("group_id")), (parent, group_id))
        rep.eq("extended: AsyncResult.children", [c.id for c in res.children or []], ["child-1"])
        rep.check("extended: date_done is a datetime", isinstance(res.date_done, datetime), repr(res.date_done))
        encoding("extended", tid)

    # -- groups -----------------------------------------------------------------------------------
    def groups():
        members = [str(uuid.uuid4()) for _ in range(3)]
        for i, tid in enumerate(members):
            written(f"group member {i}", tid, {"status": "SUCCESS", "result": i * 10})
        gid = str(uuid.uuid4())
        resp = put_group(gid, members)
        rep.check("group: PUT answers 200 or 201", resp.status in (200, 201), resp)
        raw = r.get(group_key(prefix, gid))
        rep.check("group: stored under Celery's key", raw is not None, group_key(prefix, gid))
        if raw is not None:
            rep.eq("group: Celery's group record", stored_meta(app, raw),
                   {"result": [[gid, None], [[[tid, None], None] for tid in members]]})
            rep.check("group: TTL is result_expires", ttl_near(group_key(prefix, gid), RESULT_EXPIRES),
                      r.ttl(group_key(prefix, gid)))
        restored = GroupResult.restore(gid, app=app)
        rep.check("group: GroupResult.restore finds it", restored is not None)
        if restored is not None:
            rep.eq("group: the members", [m.id for m in restored.results], members)
            rep.eq("group: GroupResult.get()", restored.get(timeout=TIMEOUT), [0, 10, 20])
        resp = http.get(f"/celery/groups/{gid}")
        if rep.eq("group: GET answers 200", resp.status, 200):
            body = resp.json()
            rep.eq("group: GET members", [(m.get("task_id"), m.get("status"), m.get("done"))
                                          for m in body.get("results", [])],
                   [(tid, "SUCCESS", True) for tid in members])
            rep.eq("group: GET done", body.get("done"), True)

    # -- Celery waiting, woken by the PUT -------------------------------------------------------
    def woken():
        def subscribed(tid: str) -> bool:
            channel = task_key(prefix, tid)
            return bool(eventually(lambda: dict(r.pubsub_numsub(channel)).get(channel.encode(), 0) >= 1, TIMEOUT))

        tid = str(uuid.uuid4())
        wait = Background(lambda: app.AsyncResult(tid).get(timeout=TIMEOUT))
        rep.check("get() waiting: Celery subscribed to the key's channel", subscribed(tid))
        written("get() waiting", tid, {"status": "SUCCESS", "result": "woken"})
        rep.eq("get() waiting: woken by the PUT's PUBLISH", wait.join(), "woken")

        tid = str(uuid.uuid4())
        wait = Background(lambda: app.AsyncResult(tid).get(timeout=TIMEOUT))
        rep.check("get() waiting for a failure: subscribed", subscribed(tid))
        written("get() waiting for a failure", tid, {"status": "FAILURE", "result": {
            "exc_type": "KeyError", "exc_message": ["missing"], "exc_module": "builtins"}})
        try:
            wait.join()
            rep.check("get() waiting for a failure: raises KeyError", False, "returned")
        except KeyError as e:
            rep.eq("get() waiting for a failure: raises KeyError", e.args, ("missing",))

        members = [str(uuid.uuid4()) for _ in range(2)]
        gid = str(uuid.uuid4())
        put_group(gid, members)
        restored = GroupResult.restore(gid, app=app)

        def write_members():
            # Celery's GroupResult.get() only wakes on the thread that runs it (here the main one).
            rep.check("GroupResult.get() waiting: subscribed to every member",
                      all(subscribed(tid) for tid in members))
            for i, tid in enumerate(members):
                written(f"GroupResult.get() waiting: member {i}", tid, {"status": "SUCCESS", "result": f"m{i}"})

        writer = Background(write_members)
        rep.eq("GroupResult.get() waiting: woken with every value", restored.get(timeout=TIMEOUT), ["m0", "m1"])
        writer.join()

    def flower_and_unknown():
        tid = str(uuid.uuid4())
        written("Flower route", tid, {"status": "SUCCESS", "result": {"v": 1}})
        resp = http.get(f"/api/task/result/{tid}")
        rep.eq("Flower route: Flower's shape", (resp.status, resp.json()),
               (200, {"task-id": tid, "state": "SUCCESS", "result": {"v": 1}}))
        tid = str(uuid.uuid4())
        rep.eq("unknown id: Celery says PENDING", app.AsyncResult(tid).state, "PENDING")
        rep.eq("unknown id: exists() is False", app.AsyncResult(tid).exists(), False)
        resp = http.get(f"/celery/results/{tid}")
        rep.eq("unknown id: resultd says 404 result-not-found", (resp.status, resp.problem_code()),
               (404, "result-not-found"))

    for label, body in [("values", values), ("SUCCESS is final", success_is_final), ("FAILURE", failures),
                        ("running states", running_states), ("extended", extended), ("group", groups),
                        ("woken", woken), ("Flower route", flower_and_unknown)]:
        case(rep, label, body)


def main() -> None:
    args = parse_args(__doc__)
    rep = Report("resultd_writes.py")
    start_watchdog(rep)
    case(rep, "run", lambda: run(args, rep))
    rep.emit()


if __name__ == "__main__":
    main()
