"""Celery writes, resultd reads.

A real Celery 5.7.0 worker (started by the Rust test, same `tasks.py`) runs tasks into every state
Celery stores: PENDING (stored by user code), STARTED (`task_track_started`), RETRY, a custom
PROGRESS state, SUCCESS, FAILURE and REVOKED, with `result_extended`, plus a saved group and a
chord. Each record is read over HTTP and compared field by field with the value Celery stored (as
decoded by Celery's own backend). HTTP long polls (`?wait=`, `Prefer: wait`, `POST
/celery/results/wait`, Flower's `/api/task/result`) are started before the task finishes and must be
answered by the worker's write, and `/celery/results/{id}/events` follows a task to SUCCESS. At the end
the channel gauge must be back to 0.

Run once per worker configuration: plain, or `--compression gzip --global-keyprefix P` (the stored
values then carry Celery's compression marker and every key the final prefix).
"""

import json
import uuid

import redis as syncredis
from celery import chord, group
from celery.exceptions import TaskRevokedError

from common import (
    COMPRESSED_MAGIC, CELERY_KEY_ORDER, EXTENDED_KEYS, NAMED_KEYS, READY, Background, Http, Report,
    case, celery_app, common_state, eventually, group_key, key_order, parse_args, parse_ts,
    start_watchdog, stored_meta, task_key, wait_for_worker,
)

RESULT_EXPIRES = 86400
TIMEOUT = 30


def run(args, rep: Report) -> None:
    tasks = celery_app()
    app = tasks.app
    http = Http(args.resultd)
    r = syncredis.Redis.from_url(args.redis)
    prefix = args.key_prefix
    states_read = set()

    if not rep.check("a worker answers a ping", wait_for_worker(app), "no worker within 60 s"):
        return

    def fresh(label: str) -> str:
        return f"{label}-{uuid.uuid4()}"

    def raw(tid: str):
        return r.get(task_key(prefix, tid))

    def compare(label: str, tid: str, resp=None) -> dict:
        """Every field of `GET /celery/results/{tid}` against the record Celery stored."""
        resp = resp or http.result(tid)
        value = raw(tid)
        meta = stored_meta(app, value)
        if not rep.check(f"{label}: stored by Celery", meta is not None, f"no key {task_key(prefix, tid)}"):
            return {}
        if not rep.eq(f"{label}: GET answers 200", resp.status, 200):
            return {}
        body = resp.json()
        states_read.add(meta["status"])
        rep.eq(f"{label}: task_id", body.get("task_id"), tid)
        rep.eq(f"{label}: status is the native status", body.get("status"), meta["status"])
        rep.eq(f"{label}: state is the common state", body.get("state"), common_state(meta["status"]))
        rep.eq(f"{label}: done", body.get("done"), meta["status"] in READY)
        for k in ("result", "traceback", "children", "group_id", "parent_id"):
            rep.eq(f"{label}: {k}", body.get(k), meta.get(k))
        if meta.get("date_done") is None:
            rep.eq(f"{label}: date_done", body.get("date_done"), None)
        else:
            got = body.get("date_done")
            rep.check(f"{label}: date_done is RFC 3339 UTC with Z", isinstance(got, str) and got.endswith("Z"), got)
            rep.check(f"{label}: date_done is the stored instant",
                      isinstance(got, str) and parse_ts(got) == parse_ts(meta["date_done"]),
                      f"got {got!r}, stored {meta['date_done']!r}")
        for k in EXTENDED_KEYS:
            if k in meta:
                rep.check(f"{label}: extended {k} is present", k in body, sorted(body))
                rep.eq(f"{label}: extended {k}", body.get(k), meta[k])
            else:
                rep.check(f"{label}: extended {k} is absent, as not stored", k not in body, body.get(k))
        extra = {k: v for k, v in meta.items() if k not in NAMED_KEYS and k not in EXTENDED_KEYS}
        rep.eq(f"{label}: extra", body.get("extra"), extra)
        ttl_after = r.ttl(task_key(prefix, tid))
        rep.check(f"{label}: ttl is the key's remaining TTL",
                  isinstance(body.get("ttl"), int) and 0 < ttl_after <= body["ttl"] <= RESULT_EXPIRES,
                  f"got {body.get('ttl')!r}, the key has {ttl_after} s")
        rep.check(f"{label}: ETag", bool(resp.header("etag")), resp.headers)
        return body

    def until_status(label: str, tid: str, status: str):
        """The first HTTP answer with `status` (polled with a bound), or the last one."""
        last = [None]

        def probe():
            last[0] = http.result(tid)
            return last[0].status == 200 and last[0].json().get("status") == status

        ok = eventually(probe, TIMEOUT)
        rep.check(f"{label}: reads {status} over HTTP while the task holds", bool(ok), last[0])
        return last[0]

    def channels_at_least(label: str, n: int) -> None:
        got = eventually(lambda: (http.channels() or 0) >= n, TIMEOUT)
        rep.check(f"{label}: the wait is subscribed (channel gauge >= {n})", bool(got), http.channels())

    # -- the layout as the real library writes it ----------------------------------------------
    def layout():
        res = tasks.add.delay(2, 3)
        rep.eq("layout: get() answers 5", res.get(timeout=TIMEOUT), 5)
        value = raw(res.id)
        rep.check("layout: the key carries the final prefix", value is not None,
                  f"no key {task_key(prefix, res.id)}; keys {r.keys('*celery-task-meta-' + res.id)}")
        if prefix:
            rep.check("layout: no key without the prefix", not r.exists(task_key("", res.id)))
        meta = stored_meta(app, value)
        rep.eq("layout: Celery's key order", key_order(app, value),
               [k for k in CELERY_KEY_ORDER if k in meta])
        ttl = r.ttl(task_key(prefix, res.id))
        rep.check("layout: TTL is result_expires", RESULT_EXPIRES - 60 <= ttl <= RESULT_EXPIRES, ttl)
        if args.compression:
            marker = COMPRESSED_MAGIC + b"application/x-gzip\x00"
            rep.check("layout: value carries the compression marker and a zlib stream",
                      value.startswith(marker) and value[len(marker):len(marker) + 1] == b"\x78", value[:40])
        else:
            rep.check("layout: value is plain JSON", value.startswith(b'{"status": "SUCCESS"'), value[:40])
        rep.check("layout: date_done has an offset", str(meta["date_done"]).endswith("+00:00"), meta["date_done"])
        body = compare("SUCCESS", res.id)
        rep.eq("SUCCESS: result over HTTP", body.get("result"), 5)
        etag = http.result(res.id).header("etag")
        again = http.result(res.id, headers={"If-None-Match": etag or '"none"'})
        rep.eq("SUCCESS: If-None-Match answers 304", again.status, 304)

    # -- every state ----------------------------------------------------------------------------
    def failure():
        res = tasks.fail.delay(1)
        try:
            res.get(timeout=TIMEOUT)
            rep.check("FAILURE: get() raises ZeroDivisionError", False, "returned")
        except ZeroDivisionError:
            rep.check("FAILURE: get() raises ZeroDivisionError", True)
        body = compare("FAILURE", res.id)
        rep.eq("FAILURE: result is the exception as data", body.get("result"),
               {"exc_type": "ZeroDivisionError", "exc_message": ["division by zero"], "exc_module": "builtins"})
        rep.check("FAILURE: traceback names the error", "ZeroDivisionError: division by zero" in (body.get("traceback") or ""),
                  body.get("traceback"))

    def started():
        gate = fresh("gate")
        res = tasks.sleepy.delay(0, gate)
        resp = until_status("STARTED", res.id, "STARTED")
        body = compare("STARTED", res.id, resp)
        rep.check("STARTED: result holds pid and hostname",
                  isinstance(body.get("result"), dict) and set(body["result"]) == {"pid", "hostname"},
                  body.get("result"))
        tasks.open_gate(gate)
        rep.check("STARTED: then get() returns", isinstance(res.get(timeout=TIMEOUT), float))

    def progress():
        gate = fresh("gate")
        res = tasks.progress.delay(4, gate)
        resp = until_status("PROGRESS", res.id, "PROGRESS")
        body = compare("PROGRESS", res.id, resp)
        rep.eq("PROGRESS: result is the state's meta", body.get("result"), {"done": 1, "total": 4})
        tasks.open_gate(gate)
        rep.eq("PROGRESS: then get() returns 4", res.get(timeout=TIMEOUT), 4)
        compare("PROGRESS then SUCCESS", res.id)

    def retry():
        gate = fresh("gate")
        res = tasks.retry_once.delay(7, gate)
        resp = until_status("RETRY", res.id, "RETRY")
        body = compare("RETRY", res.id, resp)
        rep.eq("RETRY: result is the retried exception", body.get("result"),
               {"exc_type": "RuntimeError", "exc_message": ["first run"], "exc_module": "builtins"})
        rep.check("RETRY: traceback names the retry", "celery.exceptions.Retry: Retry in 0s: RuntimeError('first run')" in (body.get("traceback") or ""), body.get("traceback"))
        tasks.open_gate(gate)
        rep.eq("RETRY: then get() returns 7", res.get(timeout=TIMEOUT), 7)
        body = compare("RETRY then SUCCESS", res.id)
        rep.eq("RETRY then SUCCESS: retries", body.get("retries"), 1)

    def pending():
        tid = fresh("user-pending")
        app.backend.store_result(tid, None, "PENDING")
        body = compare("PENDING", tid)
        rep.eq("PENDING: no date_done", body.get("date_done"), None)

    def revoked():
        tid = str(uuid.uuid4())
        replies = app.control.revoke(tid, reply=True, timeout=TIMEOUT, limit=1)
        rep.check("REVOKED: the worker acknowledges the revoke", bool(replies), replies)
        compare("REVOKED by the revoke command", tid)
        res = tasks.add.apply_async((1, 1), task_id=tid)
        arrived = eventually(lambda: "name" in (stored_meta(app, raw(tid)) or {}), TIMEOUT)
        rep.check("REVOKED: the worker refuses the sent task and stores it again", bool(arrived),
                  stored_meta(app, raw(tid)))
        body = compare("REVOKED", tid)
        rep.eq("REVOKED: result is TaskRevokedError", body.get("result"),
               {"exc_type": "TaskRevokedError", "exc_message": ["revoked"], "exc_module": "celery.exceptions"})
        try:
            res.get(timeout=TIMEOUT)
            rep.check("REVOKED: get() raises TaskRevokedError", False, "returned")
        except TaskRevokedError:
            rep.check("REVOKED: get() raises TaskRevokedError", True)

    def unknown():
        tid = fresh("never-written")
        resp = http.result(tid)
        rep.eq("unknown id: 404", resp.status, 404)
        rep.eq("unknown id: result-not-found", resp.problem_code(), "result-not-found")
        rep.eq("unknown id: where Celery itself says PENDING", app.AsyncResult(tid).state, "PENDING")

    # -- groups and chords ----------------------------------------------------------------------
    def groups():
        g = group(tasks.add.s(i, i) for i in range(3)).apply_async()
        g.save()
        rep.eq("group: get() answers", g.get(timeout=TIMEOUT), [0, 2, 4])
        rep.check("group: Celery stored the group record", r.exists(group_key(prefix, g.id)) == 1)
        ids = [m.id for m in g.results]
        resp = http.get(f"/celery/groups/{g.id}")
        if rep.eq("group: GET answers 200", resp.status, 200):
            body = resp.json()
            rep.eq("group: group_id", body.get("group_id"), g.id)
            rep.eq("group: members in order", [m.get("task_id") for m in body.get("results", [])], ids)
            for i, m in enumerate(body.get("results", [])):
                rep.eq(f"group: member {i}", {k: m.get(k) for k in ("found", "status", "state", "done")},
                       {"found": True, "status": "SUCCESS", "state": "SUCCESS", "done": True})
            rep.eq("group: done", body.get("done"), True)
            ttl = body.get("ttl")
            rep.check("group: ttl", isinstance(ttl, int) and 0 < ttl <= RESULT_EXPIRES, ttl)
        for i, tid in enumerate(ids):
            member = compare(f"group member {i}", tid)
            rep.eq(f"group member {i}: group_id is the group", member.get("group_id"), g.id)

        gate = fresh("gate")
        g2 = group(tasks.add.s(1, 1), tasks.sleepy.s(0, gate)).apply_async()
        g2.save()
        first, second = g2.results
        first.get(timeout=TIMEOUT)
        until_status("group with a running member", second.id, "STARTED")
        resp = http.get(f"/celery/groups/{g2.id}")
        if rep.eq("group with a running member: GET answers 200", resp.status, 200):
            body = resp.json()
            got = [{k: m.get(k) for k in ("task_id", "found", "status", "state", "done")}
                   for m in body.get("results", [])]
            rep.eq("group with a running member: members", got, [
                {"task_id": first.id, "found": True, "status": "SUCCESS", "state": "SUCCESS", "done": True},
                {"task_id": second.id, "found": True, "status": "STARTED", "state": "RUNNING", "done": False},
            ])
            rep.eq("group with a running member: not done", body.get("done"), False)
        tasks.open_gate(gate)
        g2.get(timeout=TIMEOUT)

        missing = fresh("never-saved-group")
        resp = http.get(f"/celery/groups/{missing}")
        rep.eq("unknown group: 404", resp.status, 404)

    def chords():
        res = chord([tasks.add.s(1, 2), tasks.add.s(3, 4)])(tasks.tsum.s())
        rep.eq("chord: get() answers the body's result", res.get(timeout=TIMEOUT), 10)
        body = compare("chord body", res.id)
        rep.eq("chord body: result is the sum", body.get("result"), 10)
        header = res.parent
        rep.check("chord body: group_id is the header's group", body.get("group_id") == header.id,
                  f"{body.get('group_id')!r} vs {header.id!r}")
        for i, m in enumerate(header.results):
            part = compare(f"chord header {i}", m.id)
            rep.eq(f"chord header {i}: group_id is the header's group", part.get("group_id"), header.id)

    # -- long polls woken by the worker ---------------------------------------------------------
    def long_polls():
        tid = str(uuid.uuid4())
        wait = Background(http.result, tid, wait=TIMEOUT)
        channels_at_least("?wait on a result not yet written", 1)
        rep.check("waits: the channel gauge is exported", http.channels() is not None, "no resultd_celery_channels")
        tasks.sleepy.apply_async((0.1,), task_id=tid)
        resp = wait.join()
        if rep.eq("?wait on a result not yet written: 200", resp.status, 200):
            body = resp.json()
            rep.eq("?wait on a result not yet written: woken with SUCCESS", body.get("status"), "SUCCESS")
            rep.eq("?wait on a result not yet written: done", body.get("done"), True)
            rep.check("?wait on a result not yet written: answered after the task ended",
                      isinstance(body.get("result"), float) and resp.received_at >= body["result"], body)
            rep.eq("?wait on a result not yet written: the float result exactly as stored", body.get("result"),
                   (stored_meta(app, raw(tid)) or {}).get("result"))

        gate = fresh("gate")
        res = tasks.sleepy.delay(0, gate)
        until_status("Prefer: wait", res.id, "STARTED")
        wait = Background(http.result, res.id, headers={"Prefer": f"wait={TIMEOUT}"})
        channels_at_least("Prefer: wait", 1)
        tasks.open_gate(gate)
        resp = wait.join()
        rep.eq("Prefer: wait: woken with SUCCESS", (resp.status, resp.json().get("status")), (200, "SUCCESS"))

        a, b = str(uuid.uuid4()), str(uuid.uuid4())
        wait = Background(http.post, "/celery/results/wait", {"ids": [a, b], "mode": "all", "timeout": TIMEOUT})
        channels_at_least("POST wait all", 2)
        tasks.add.apply_async((1, 2), task_id=a)
        tasks.fail.apply_async((1,), task_id=b)
        resp = wait.join()
        if rep.eq("POST wait all: 200", resp.status, 200):
            body = resp.json()
            rep.eq("POST wait all: satisfied", body.get("satisfied"), True)
            rep.eq("POST wait all: both done", sorted(body.get("done") or []), sorted([a, b]))

        c, d = str(uuid.uuid4()), str(uuid.uuid4())
        wait = Background(http.post, "/celery/results/wait", {"ids": [c, d], "mode": "any", "timeout": TIMEOUT})
        channels_at_least("POST wait any", 2)
        tasks.add.apply_async((2, 2), task_id=c)
        resp = wait.join()
        if rep.eq("POST wait any: 200", resp.status, 200):
            body = resp.json()
            rep.eq("POST wait any: satisfied", body.get("satisfied"), True)
            rep.eq("POST wait any: the finished one is done", body.get("done"), [c])
            rep.eq("POST wait any: the other is missing", body.get("missing"), [d])

        gate = fresh("gate")
        res = tasks.sleepy.delay(0, gate)
        until_status("Flower route", res.id, "STARTED")
        wait = Background(http.get, f"/api/task/result/{res.id}?timeout={TIMEOUT}")
        channels_at_least("Flower route", 1)
        tasks.open_gate(gate)
        resp = wait.join()
        value = res.get(timeout=TIMEOUT)
        if rep.eq("Flower route: 200", resp.status, 200):
            rep.eq("Flower route: the state after the wait and the result", resp.json(),
                   {"task-id": res.id, "state": "SUCCESS", "result": value})

        tid = str(uuid.uuid4())
        wait = Background(http.get, f"/api/task/result/{tid}?timeout={TIMEOUT}")
        channels_at_least("Flower route on a result not yet written", 1)
        tasks.add.apply_async((5, 6), task_id=tid)
        resp = wait.join()
        rep.eq("Flower route on a result not yet written: woken with the result", (resp.status, resp.json()),
               (200, {"task-id": tid, "state": "SUCCESS", "result": 11}))

        res = tasks.fail.delay(2)
        try:
            res.get(timeout=TIMEOUT)
        except ZeroDivisionError:
            pass
        resp = http.get(f"/api/task/result/{res.id}")
        body = resp.json() if resp.status == 200 else {}
        rep.eq("Flower route on a FAILURE: state", body.get("state"), "FAILURE")
        rep.check("Flower route on a FAILURE: traceback", "ZeroDivisionError" in str(body.get("traceback")), body)

        tid = fresh("never-written")
        resp = http.get(f"/api/task/result/{tid}?timeout=0.2")
        rep.eq("Flower route on an unknown id: 200 PENDING", (resp.status, resp.json()),
               (200, {"task-id": tid, "state": "PENDING"}))

        gate = fresh("gate")
        res = tasks.progress.delay(4, gate)
        until_status("events", res.id, "PROGRESS")
        stream = Background(http.events, f"/celery/results/{res.id}/events")
        channels_at_least("events", 1)
        tasks.open_gate(gate)
        events = stream.join()
        records = [json.loads(e.get("data", "null")) for e in events if e.get("event") == "result"]
        rep.eq("events: follow the worker from PROGRESS to SUCCESS, then end",
               [(e.get("status"), e.get("done")) for e in records], [("PROGRESS", False), ("SUCCESS", True)])
        rep.eq("events: the last one carries the result", records[-1].get("result") if records else None, 4)
        rep.check("events: every result event has the record's ETag as its id",
                  all(e.get("id") for e in events if e.get("event") == "result"), events)

        resp = http.result(fresh("never-written"), wait=1)
        rep.eq("?wait on a result never written: 404 after the wait",
               (resp.status, resp.problem_code()), (404, "result-not-found"))

    for label, body in [("layout", layout), ("FAILURE", failure), ("STARTED", started), ("PROGRESS", progress),
                        ("RETRY", retry), ("PENDING", pending), ("REVOKED", revoked), ("unknown", unknown),
                        ("group", groups), ("chord", chords), ("waits", long_polls)]:
        case(rep, label, body)

    rep.eq("every state Celery stores was read over HTTP", sorted(states_read),
           sorted({"PENDING", "STARTED", "RETRY", "PROGRESS", "SUCCESS", "FAILURE", "REVOKED"}))
    after = eventually(lambda: http.channels() == 0, TIMEOUT, every=0.1)
    rep.check("the channel gauge is back to 0", bool(after), http.channels())
    rep.measure("channels_after", http.channels())
    rep.measure("states_read", sorted(states_read))


def main() -> None:
    args = parse_args(__doc__)
    rep = Report("celery_writes.py")
    start_watchdog(rep)
    case(rep, "run", lambda: run(args, rep))
    rep.emit()


if __name__ == "__main__":
    main()
