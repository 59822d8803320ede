"""mognet writes, resultd reads.

mognet 2.0.0's own RedisResultBackend / RedisStateBackend / App.revoke write every kind of record,
value, metadata, children and state into the shared Redis; each is then read back over resultd's
HTTP API and compared with the exact cells mognet stored and with mognet's own reading of them.
Values are written both gzipped (mognet's default) and plain (`result_value_encoding=None`).
"""

import asyncio
import json
import urllib.parse
from datetime import datetime, timezone
from uuid import uuid4

from mognet.exceptions.result_exceptions import ResultNotReady, ResultValueLost, Revoked
from mognet.backend.redis_result_backend import RedisResultBackend
from mognet.model.result import Result, ResultState
from mognet.state.state import State

from common import (
    start_watchdog,
    STATE_ROUTE_MISSING, Http, Report, connect_backends, mognet_config, parse_args, parse_ts, raw_redis,
    result_key, state_routes_available, stored_cells, stored_holder,
)

FIELDS = ["id", "name", "state", "number_of_starts", "number_of_stops", "parent_id", "created",
          "started", "finished", "node_id", "request_kwargs_repr"]
# mognet's model defaults, for fields a hash does not hold (get_or_create writes only `id`).
DEFAULTS = {"name": None, "state": "PENDING", "number_of_starts": 0, "number_of_stops": 0,
            "parent_id": None, "created": None, "started": None, "finished": None,
            "node_id": None, "request_kwargs_repr": None}
API_FIELDS = set(FIELDS) | {"app", "done", "ttl"}

LARGE = {"rows": [{"i": i, "s": "x" * 10} for i in range(2000)]}  # 54 943 bytes of JSON
VALUES = [
    ("int", 42),
    ("dict", {"a": {"b": [1, 2.5, None]}, "ü": "é", "big": 2 ** 70}),
    ("str", "héllo ✓"),
    ("none", None),
    ("list", [1, "a", None, True]),
    ("bool", True),
    ("float", 3.5),
    ("large", LARGE),
]


class Checker:
    def __init__(self, rep: Report, http: Http, r, app: str):
        self.rep, self.http, self.r, self.app = rep, http, r, app

    async def record(self, label: str, rid, rb) -> dict:
        """The record over HTTP equals the cells mognet stored and mognet's own reading."""
        rep = self.rep
        resp = self.http.get(f"/results/{rid}")
        if not rep.eq(f"{label}: GET /results answers 200", resp.status, 200):
            return {}
        body = resp.json()
        key = result_key(self.app, rid)
        cells = stored_cells(self.r, key)
        rep.eq(f"{label}: record has exactly the 11 fields plus app, done, ttl", set(body), API_FIELDS)
        for f in FIELDS:
            want = cells[f] if f in cells else DEFAULTS[f]
            if f == "id":
                want = str(rid)
            rep.eq(f"{label}: {f} equals the stored cell", body.get(f), want)
        res = await rb.get(rid)
        as_mognet = {
            "id": str(res.id), "name": res.name, "state": res.state.value,
            "number_of_starts": res.number_of_starts, "number_of_stops": res.number_of_stops,
            "parent_id": None if res.parent_id is None else str(res.parent_id),
            "created": res.created, "started": res.started, "finished": res.finished,
            "node_id": res.node_id, "request_kwargs_repr": res.request_kwargs_repr,
        }
        ours = {f: body.get(f) for f in FIELDS}
        for ts in ("created", "started", "finished"):
            ours[ts] = parse_ts(ours[ts])
        rep.eq(f"{label}: record equals mognet's Result", ours, as_mognet)
        rep.eq(f"{label}: done equals Result.done", body.get("done"), res.done)
        rep.eq(f"{label}: app is the App name", body.get("app"), self.app)
        redis_ttl = self.r.ttl(key)
        ttl = body.get("ttl")
        rep.check(f"{label}: ttl is the key's TTL",
                  ttl is None if redis_ttl == -1 else ttl is not None and abs(ttl - redis_ttl) <= 2,
                  f"api {ttl} redis {redis_ttl}")
        return body

    async def value(self, label: str, rid, rb, expected=None, *, check_python=True) -> None:
        """The value over HTTP is the holder mognet stored, plain and gzip passed through."""
        rep = self.rep
        stored = stored_holder(self.r, self.app, rid)
        resp = self.http.get(f"/results/{rid}/value")
        if not rep.eq(f"{label}: GET value answers 200", resp.status, 200):
            rep.failures[-1]["detail"] += f" {resp!r}"
            return
        rep.eq(f"{label}: value holder equals the stored holder", resp.json(), stored)
        rep.eq(f"{label}: value is sent inflated without Accept-Encoding",
               resp.header("content-encoding"), None)
        raw = self.r.hgetall(result_key(self.app, rid) + "/value")
        gz = self.http.get(f"/results/{rid}/value", headers={"Accept-Encoding": "gzip"})
        stored_gzip = raw.get(b"encoding") == b'"gzip"'
        rep.eq(f"{label}: Content-Encoding follows the stored encoding",
               gz.header("content-encoding"), "gzip" if stored_gzip else None)
        rep.check(f"{label}: value bytes go out exactly as stored", gz.body == raw[b"contents"],
                  f"{len(gz.body)} vs {len(raw[b'contents'])} bytes")
        if check_python:
            res = await rb.get(rid)
            value = await res.get()
            rep.eq(f"{label}: raw_value equals mognet's Result.get()", resp.json()["raw_value"],
                   json.loads(json.dumps(value)))
            if expected is not None or value is None:
                rep.eq(f"{label}: Result.get() is the written value", value, expected)


async def run(args, rep: Report) -> None:
    app_name = args.app
    http = Http(args.resultd, app_name)
    r = raw_redis(args.redis)
    app, rb, sb = await connect_backends(args.redis, app_name, "gzip")
    _, rb_plain, _ = await connect_backends(args.redis, app_name, None)
    c = Checker(rep, http, r, app_name)
    now = datetime.now(tz=timezone.utc)

    def new(backend, name="demo.add", **kw):
        # The same construction as App.submit.
        return Result(backend, id=uuid4(), name=name, state=ResultState.PENDING, created=now,
                      request_kwargs_repr="1, b=2", **kw)

    async def case(label, body):
        try:
            await body()
        except Exception as e:  # one broken case must not hide the others
            rep.error(label, e)

    # --- records in every unready state ---------------------------------------------------------
    async def pending():
        res = new(rb)
        await rb.set(res.id, res)
        body = await c.record("pending", res.id, rb)
        rep.eq("pending: not done", body.get("done"), False)
        v = http.get(f"/results/{res.id}/value")
        rep.eq("pending: value answers 409 result-not-ready like ResultNotReady",
               (v.status, v.problem_code()), (409, "result-not-ready"))
        try:
            await (await rb.get(res.id)).get()
            rep.check("pending: mognet raises ResultNotReady", False, "no exception")
        except ResultNotReady:
            rep.check("pending: mognet raises ResultNotReady", True)
        w = http.get(f"/results/{res.id}", wait=0.3)
        rep.eq("pending: a short wait ends with the pending record", (w.status, w.json().get("done")), (200, False))

    async def running():
        res = new(rb)
        await rb.set(res.id, res)
        await res.start(node_id="1234@host-a")
        body = await c.record("running", res.id, rb)
        rep.eq("running: state", body.get("state"), "RUNNING")

    async def suspended():
        res = new(rb)
        await rb.set(res.id, res)
        await res.start(node_id="1234@host-a")
        await res.suspend()
        body = await c.record("suspended", res.id, rb)
        rep.eq("suspended: state and counters", (body.get("state"), body.get("number_of_starts"),
                                                  body.get("number_of_stops")), ("SUSPENDED", 1, 1))
        await res.resume(node_id="1234@host-b")
        body = await c.record("resumed", res.id, rb)
        rep.eq("resumed: state and counters", (body.get("state"), body.get("number_of_starts"),
                                                body.get("node_id")), ("RUNNING", 2, "1234@host-b"))

    async def get_or_create_only():
        rid = uuid4()
        await rb.get_or_create(rid)
        body = await c.record("get_or_create", rid, rb)
        rep.eq("get_or_create: reads as a PENDING record without created", (body.get("state"), body.get("created")),
               ("PENDING", None))

    for label, body in [("pending", pending), ("running", running), ("suspended", suspended),
                        ("get_or_create", get_or_create_only)]:
        await case(label, body)

    # --- successes, gzip and plain --------------------------------------------------------------
    for enc, backend in (("gzip", rb), ("plain", rb_plain)):
        cell = b'"gzip"' if enc == "gzip" else b"null"
        for vlabel, value in VALUES:
            label = f"success {vlabel} {enc}"

            async def success(label=label, backend=backend, value=value, cell=cell):
                res = new(backend)
                await backend.set(res.id, res)
                await res.start(node_id="1234@host-a")
                await res.set_result(value)
                rep.eq(f"{label}: mognet stored encoding {cell.decode()}",
                       r.hget(result_key(app_name, res.id) + "/value", "encoding"), cell)
                body = await c.record(label, res.id, rb)
                rep.eq(f"{label}: SUCCESS and done", (body.get("state"), body.get("done")), ("SUCCESS", True))
                await c.value(label, res.id, rb, value)
                holder = http.get(f"/results/{res.id}/value").json()
                rep.eq(f"{label}: value_type is mognet's", holder["value_type"],
                       f"builtins:{type(value).__name__}")
                w = http.get(f"/results/{res.id}", wait=30)
                rep.check(f"{label}: a wait on the done result answers at once",
                          w.status == 200 and w.json()["done"] and w.elapsed < 5, f"{w!r} {w.elapsed:.3f}s")

            await case(label, success)

        label = f"failure {enc}"

        async def failure(label=label, backend=backend):
            res = new(backend)
            await backend.set(res.id, res)
            await res.start(node_id="1234@host-a")
            try:
                raise ValueError("boom ü")
            except ValueError as e:
                await res.set_error(e)
            body = await c.record(label, res.id, rb)
            rep.eq(f"{label}: FAILURE and done", (body.get("state"), body.get("done")), ("FAILURE", True))
            await c.value(label, res.id, rb, check_python=False)
            holder = http.get(f"/results/{res.id}/value").json()
            rv = holder.get("raw_value") or {}
            rep.eq(f"{label}: value_type is _ExceptionInfo", holder.get("value_type"),
                   "mognet.model.result:_ExceptionInfo")
            rep.eq(f"{label}: exception name and message", (rv.get("name"), rv.get("message")),
                   ("builtins:ValueError", "boom ü"))
            rep.check(f"{label}: traceback names the exception",
                      "ValueError: boom ü" in (rv.get("traceback") or ""), rv.get("traceback"))
            try:
                await (await rb.get(res.id)).get()
                rep.check(f"{label}: mognet raises the same exception", False, "no exception")
            except ValueError as e:
                rep.eq(f"{label}: mognet raises the same exception", str(e), rv.get("message"))

        await case(label, failure)

    # --- revocations ----------------------------------------------------------------------------
    async def revoked_by_result():
        res = new(rb)
        await rb.set(res.id, res)
        await res.revoke()
        body = await c.record("Result.revoke", res.id, rb)
        rep.eq("Result.revoke: REVOKED and done", (body.get("state"), body.get("done")), ("REVOKED", True))
        v = http.get(f"/results/{res.id}/value")
        try:
            await (await rb.get(res.id)).get()
            lost = False
        except ResultValueLost:
            lost = True
        rep.eq("Result.revoke: no value is 410 value-expired where mognet raises ResultValueLost",
               (v.status, v.problem_code(), lost), (410, "value-expired", True))

    async def revoked_by_app():
        parent = new(rb, name="demo.parent")
        await rb.set(parent.id, parent)
        kids = []
        for _ in range(2):
            kid = new(rb, name="demo.child", parent_id=parent.id)
            await rb.add_children(parent.id, kid.id)
            await rb.set(kid.id, kid)
            kids.append(kid.id)
        await app.revoke(parent.id)
        rep.eq("App.revoke: the placeholder value has no TTL (mognet's get_or_create quirk)",
               r.ttl(result_key(app_name, parent.id) + "/value"), -1)
        for label, rid in [("App.revoke parent", parent.id), ("App.revoke child 1", kids[0]),
                           ("App.revoke child 2", kids[1])]:
            body = await c.record(label, rid, rb)
            rep.eq(f"{label}: REVOKED", body.get("state"), "REVOKED")
            # App.revoke leaves get_or_create's not-ready placeholder as the value.
            await c.value(label, rid, rb, check_python=False)
            try:
                await (await rb.get(rid)).get()
                rep.check(f"{label}: mognet raises Revoked", False, "no exception")
            except Revoked:
                rep.check(f"{label}: mognet raises Revoked", True)
        ids = http.get(f"/results/{parent.id}/children").json().get("ids")
        rep.eq("App.revoke parent: children listed", ids, sorted(str(k) for k in kids))

    await case("Result.revoke", revoked_by_result)
    await case("App.revoke", revoked_by_app)

    # --- no TTLs (result_ttl=None, result_value_ttl=None) ----------------------------------------
    async def no_ttl():
        cfg = mognet_config(args.redis)
        cfg.result_backend.redis.result_ttl = None
        cfg.result_backend.redis.result_value_ttl = None
        forever = RedisResultBackend(cfg.result_backend, app=app)
        await forever.connect()
        try:
            res = new(forever)
            await forever.set(res.id, res)
            await res.set_result("kept")
            rep.eq("no ttl: mognet set no EXPIRE", r.ttl(result_key(app_name, res.id)), -1)
            body = await c.record("no ttl", res.id, rb)
            rep.eq("no ttl: ttl is null", body.get("ttl", "absent"), None)
            await c.value("no ttl", res.id, rb, "kept")
        finally:
            await forever.close()

    await case("no ttl", no_ttl)

    # --- parent with two children ---------------------------------------------------------------
    async def family():
        parent = new(rb, name="demo.parent")
        await rb.set(parent.id, parent)
        await parent.start(node_id="n1")
        kids = []
        for i in range(2):
            # The order App.submit uses with a context: add_children, then the child's hash.
            kid = new(rb, name="demo.child", parent_id=parent.id)
            await rb.add_children(parent.id, kid.id)
            await rb.set(kid.id, kid)
            await kid.start(node_id="n1")
            await kid.set_result(i * 10)
            kids.append(kid)
        await parent.set_result([0, 10])
        await c.record("family parent", parent.id, rb)
        await c.value("family parent", parent.id, rb, [0, 10])
        resp = http.get(f"/results/{parent.id}/children")
        rep.eq("family: GET children answers 200", resp.status, 200)
        ids = resp.json().get("ids")
        fresh = await rb.get(parent.id)
        mognet_ids = sorted([str(i) async for i in fresh.children.iter_ids()])
        rep.eq("family: children ids equal Result.children.iter_ids()", ids, mognet_ids)
        rep.eq("family: children count equals Result.children.count()", len(ids or []),
               await fresh.children.count())
        for i, kid in enumerate(kids):
            body = await c.record(f"family child {i}", kid.id, rb)
            rep.eq(f"family child {i}: parent_id", body.get("parent_id"), str(parent.id))
            await c.value(f"family child {i}", kid.id, rb, i * 10)

    await case("family", family)

    # --- metadata -------------------------------------------------------------------------------
    async def metadata():
        res = new(rb)
        await rb.set(res.id, res)
        await res.set_metadata(user="alice", priority=5, tags=["a", "b"], nested={"k": None, "ü": 1.5},
                               big=2 ** 70, text="ünïcode ✓ \U0001F600")
        await res.set_metadata(priority=6)  # a merge, as mognet writes them
        resp = http.get(f"/results/{res.id}/metadata")
        rep.eq("metadata: GET answers 200", resp.status, 200)
        rep.eq("metadata: equals Result.get_metadata()", resp.json(), await res.get_metadata())
        rep.check("metadata: big integers are exact in the HTTP body",
                  b'"big":1180591620717411303424' in resp.body.replace(b" ", b""), resp.body)
        empty = new(rb)
        await rb.set(empty.id, empty)
        resp = http.get(f"/results/{empty.id}/metadata")
        rep.eq("metadata: none set reads as {} like get_metadata()", resp.json(), await empty.get_metadata())
        odd = new(rb)
        await rb.set(odd.id, odd)
        await odd.set_metadata(nan=float("nan"), inf=float("inf"), ninf=float("-inf"), ok=1)
        resp = http.get(f"/results/{odd.id}/metadata")
        rep.eq("metadata: Python's NaN/Infinity tokens read as null (strict JSON)",
               (resp.status, resp.json() if resp.status == 200 else None),
               (200, {"inf": None, "nan": None, "ninf": None, "ok": 1}))

    await case("metadata", metadata)

    # --- state ----------------------------------------------------------------------------------
    state_names = ["state: object equals the fields mognet wrote", "state: each field equals State.get()",
                   "state: a read refreshes the TTL as mognet does", "state: missing key is 404 state-not-found"]
    if not state_routes_available(http):
        for n in state_names:
            rep.skip(n, STATE_ROUTE_MISSING)
    else:
        async def state():
            rid = uuid4()
            st = State(app, rid)
            await st.set("progress", {"step": 3, "of": 10})
            await st.set("counter", 7)
            await st.set("name", "ünïcode")
            await st.set("nothing", None)
            await st.set("gone", [1, 2])
            await st.pop("gone")
            app_q = urllib.parse.quote(app_name, safe="")
            resp = http.get(f"/state/{app_q}/{rid}")
            want = {"progress": {"step": 3, "of": 10}, "counter": 7, "name": "ünïcode", "nothing": None}
            rep.eq(state_names[0], (resp.status, resp.json() if resp.status == 200 else resp.body), (200, want))
            fields = {}
            for k in want:
                f = http.get(f"/state/{app_q}/{rid}/{k}")
                fields[k] = f.json() if f.status == 200 else f"{f.status} {f.body[:100]!r}"
            rep.eq(state_names[1], fields, {k: await st.get(k) for k in want})
            skey = f"{app_name}.mognet.state.{rid}"
            r.expire(skey, 100)
            http.get(f"/state/{app_q}/{rid}")
            rep.check(state_names[2], r.ttl(skey) > 7000, f"ttl {r.ttl(skey)}")
            miss = http.get(f"/state/{app_q}/{uuid4()}")
            rep.eq(state_names[3], (miss.status, miss.problem_code()), (404, "state-not-found"))

        await case("state", state)

    await rb.close()
    await rb_plain.close()
    await sb.close()


def main():
    args = parse_args(__doc__)
    rep = Report("mognet_writes")
    start_watchdog(rep)
    try:
        asyncio.run(run(args, rep))
    except Exception as e:
        rep.error("mognet_writes", e)
    rep.emit()


if __name__ == "__main__":
    main()
