"""resultd writes, mognet reads.

Every kind of record, value, exception, revocation, metadata, children and state is written over
resultd's HTTP API and read back through mognet 2.0.0's own API: `Result.get()` returns the value
or raises the right exception, `Result.wait()` returns, `get_metadata()`, `Result.children` and
`State.get()` agree. Run once per resultd compression setting (`--compression gzip --min-bytes N`
or `--compression off`); the stored `encoding` cells are checked against it.
"""

import asyncio
import gzip
import json
import urllib.parse
from datetime import datetime, timezone
from uuid import uuid4

from mognet.exceptions.result_exceptions import (
    ResultFailed, ResultNotReady, ResultValueLost, Revoked,
)
from mognet.model.result import Result, ResultState
from mognet.state.state import State

from common import (
    start_watchdog,
    HOLDER_MEDIA_TYPE, NO_BODY, STATE_ROUTE_MISSING, Http, Report, connect_backends, parse_args, parse_ts,
    raw_redis, result_key, same, state_routes_available,
)

RESULT_TTL = 1814400
VALUE_TTL = 604800
STATE_TTL = 7200

LARGE = {"rows": [{"i": i, "s": "x" * 10} for i in range(2000)]}  # 54 943 bytes of JSON
VALUES = [
    ("int", 42),
    ("dict", {"a": {"b": [1, 2.5, None]}, "ü": "é ✓ \U0001F600", "big": 2 ** 70}),
    ("str", "héllo ✓"),
    ("none", None),
    ("list", [1, "a", None, True]),
    ("bool", False),
    ("float", 3.5),
    ("large", LARGE),
]

# A protocol-2 pickle of builtins.RuntimeError('disk full ü'): resultd must never store it.
PICKLE = "gAJjYnVpbHRpbnMKUnVudGltZUVycm9yClgMAAAAZGlzayBmdWxsIMO8hVIu"


def extra_args(p):
    p.add_argument("--compression", choices=["gzip", "off"], required=True)
    p.add_argument("--min-bytes", type=int, default=0, help="resultd's compression.min_bytes")


async def run(args, rep: Report) -> None:
    app_name = args.app
    http = Http(args.resultd, app_name)
    r = raw_redis(args.redis)
    app, rb, sb = await connect_backends(args.redis, app_name)

    def expected_encoding(holder_len: int) -> bytes:
        if args.compression == "gzip" and holder_len >= args.min_bytes:
            return b'"gzip"'
        return b"null"

    def ttl_near(key: str, want: int) -> bool:
        return want - 30 <= r.ttl(key) <= want

    async def case(label, body):
        try:
            await body()
        except Exception as e:  # one broken case must not hide the others
            rep.error(label, e)

    async def create(label: str, **fields) -> str:
        rid = str(uuid4())
        resp = http.put(f"/results/{rid}", {"name": "rust.task", "request_kwargs_repr": "1, b=2", **fields})
        rep.eq(f"{label}: PUT record answers 201", resp.status, 201)
        return rid

    async def start(label: str, rid: str) -> dict:
        resp = http.patch(f"/results/{rid}", {"state": "RUNNING", "node_id": "rust-1@host"})
        rep.eq(f"{label}: PATCH RUNNING answers 200", resp.status, 200)
        return resp.json()

    async def same_record(label: str, rid: str) -> None:
        """mognet's Result has exactly the fields resultd answers."""
        body = http.get(f"/results/{rid}").json()
        res = await rb.get(rid)
        as_mognet = {
            "id": str(res.id), "name": res.name, "state": res.state.value,
            "number_of_starts": res.number_of_starts, "number_of_stops": res.number_of_stops,
            "parent_id": None if res.parent_id is None else str(res.parent_id),
            "created": res.created, "started": res.started, "finished": res.finished,
            "node_id": res.node_id, "request_kwargs_repr": res.request_kwargs_repr,
        }
        ours = {k: body.get(k) for k in as_mognet}
        for ts in ("created", "started", "finished"):
            ours[ts] = parse_ts(ours[ts])
        rep.eq(f"{label}: mognet's Result equals the HTTP record", as_mognet, ours)
        rep.eq(f"{label}: Result.done equals done", res.done, body.get("done"))

    async def complete(rid: str, state: str, *, body=NO_BODY, raw=None, headers=None):
        return await asyncio.to_thread(http.put, f"/results/{rid}/value", body, raw=raw,
                                       headers=headers, state=state)

    # --- records --------------------------------------------------------------------------------
    async def lifecycle():
        rid = await create("lifecycle")
        key = result_key(app_name, rid)
        rep.eq("lifecycle: all 11 fields are stored", r.hlen(key), 11)
        rep.check("lifecycle: record TTL is result_ttl", ttl_near(key, RESULT_TTL), r.ttl(key))
        res = await rb.get(rid)
        rep.eq("lifecycle: mognet reads PENDING", res.state.value, "PENDING")
        rep.check("lifecycle: created is set", res.created is not None, res.created)
        await same_record("lifecycle pending", rid)
        try:
            await res.get()
            rep.check("lifecycle: pending Result.get() raises ResultNotReady", False, "no exception")
        except ResultNotReady:
            rep.check("lifecycle: pending Result.get() raises ResultNotReady", True)
        try:
            await res.wait(timeout=0.3)
            rep.check("lifecycle: pending Result.wait() times out", False, "returned")
        except asyncio.TimeoutError:
            rep.check("lifecycle: pending Result.wait() times out", True)
        await start("lifecycle", rid)
        res = await rb.get(rid)
        rep.eq("lifecycle: RUNNING with one start", (res.state.value, res.number_of_starts, res.node_id),
               ("RUNNING", 1, "rust-1@host"))
        rep.check("lifecycle: started is set", res.started is not None, res.started)
        rep.eq("lifecycle: unexpected_retry_count is 1 while running", res.unexpected_retry_count, 1)
        await same_record("lifecycle running", rid)
        http.patch(f"/results/{rid}", {"state": "SUSPENDED"})
        res = await rb.get(rid)
        rep.eq("lifecycle: SUSPENDED with one stop", (res.state.value, res.number_of_stops), ("SUSPENDED", 1))
        await same_record("lifecycle suspended", rid)
        http.patch(f"/results/{rid}", {"state": "RUNNING", "node_id": "rust-2@host"})
        res = await rb.get(rid)
        rep.eq("lifecycle: resumed RUNNING with two starts",
               (res.state.value, res.number_of_starts, res.node_id), ("RUNNING", 2, "rust-2@host"))
        await same_record("lifecycle resumed", rid)

    await case("lifecycle", lifecycle)

    # --- successes ------------------------------------------------------------------------------
    for vlabel, value in VALUES:
        label = f"success {vlabel}"

        async def success(label=label, value=value):
            rid = await create(label)
            await start(label, rid)
            res = await rb.get(rid)
            waiter = asyncio.create_task(res.wait(timeout=20))
            await asyncio.sleep(0.15)  # Result.wait() is polling now
            resp = await complete(rid, "SUCCESS", body=value)
            rep.eq(f"{label}: PUT value?state=SUCCESS answers 200", resp.status, 200)
            try:
                await waiter
                rep.check(f"{label}: Result.wait() returns", True)
            except Exception as e:
                rep.check(f"{label}: Result.wait() returns", False, repr(e))
            rep.eq(f"{label}: waited Result is SUCCESS", res.state.value, "SUCCESS")
            rep.eq(f"{label}: Result.get() returns the value", await res.get(), value)
            vkey = result_key(app_name, rid) + "/value"
            holder_len = len(json.dumps({"value_type": f"builtins:{type(value).__name__}", "raw_value": value},
                                        separators=(",", ":"), ensure_ascii=False).encode())
            rep.eq(f"{label}: stored encoding follows resultd's compression",
                   r.hget(vkey, "encoding"), expected_encoding(holder_len))
            rep.eq(f"{label}: value_type is builtins:{type(value).__name__}",
                   (await rb.get_value(res.id)).value_type, f"builtins:{type(value).__name__}")
            rep.check(f"{label}: value TTL is result_value_ttl", ttl_near(vkey, VALUE_TTL), r.ttl(vkey))
            await same_record(label, rid)

        await case(label, success)

    async def gzip_upload():
        rid = await create("gzip upload")
        value = {"uploaded": "gzip ✓", "n": list(range(50))}
        resp = await complete(rid, "SUCCESS", raw=gzip.compress(json.dumps(value).encode()),
                              headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        rep.eq("gzip upload: answers 200", resp.status, 200)
        rep.eq("gzip upload: Result.get() returns the value", await (await rb.get(rid)).get(), value)

    async def holder_upload():
        rid = await create("holder upload")
        holder = {"value_type": "builtins:list", "raw_value": [1, 2, 3]}
        resp = await complete(rid, "SUCCESS", raw=json.dumps(holder).encode(),
                              headers={"Content-Type": HOLDER_MEDIA_TYPE})
        rep.eq("holder upload: answers 200", resp.status, 200)
        rep.eq("holder upload: Result.get() returns the list", await (await rb.get(rid)).get(), [1, 2, 3])

    await case("gzip upload", gzip_upload)
    await case("holder upload", holder_upload)

    # --- failures -------------------------------------------------------------------------------
    async def failure_holder():
        rid = await create("failure holder")
        await start("failure holder", rid)
        res = await rb.get(rid)
        waiter = asyncio.create_task(res.wait(timeout=20))
        await asyncio.sleep(0.15)
        holder = {"value_type": "mognet.model.result:_ExceptionInfo",
                  "raw_value": {"name": "rust:TaskError", "message": "disk full ü",
                                "traceback": "Traceback: rust side\n", "raw_data": PICKLE,
                                "raw_data_encoding": "application/python-pickle"}}
        resp = await complete(rid, "FAILURE", raw=json.dumps(holder).encode(),
                              headers={"Content-Type": HOLDER_MEDIA_TYPE})
        rep.eq("failure holder: PUT value?state=FAILURE answers 200", resp.status, 200)
        await waiter
        rep.eq("failure holder: waited Result is FAILURE", res.state.value, "FAILURE")
        try:
            await res.get()
            rep.check("failure holder: Result.get() raises Exception(message)", False, "no exception")
        except Exception as e:
            # Exactly Exception: the client's pickle (a RuntimeError) was dropped, never loaded.
            rep.eq("failure holder: Result.get() raises Exception(message)", (type(e).__name__, str(e)),
                   ("Exception", "disk full ü"))
        raw = await res.value.get_raw_value()
        rep.eq("failure holder: the client's pickle is not stored", (raw.raw_data, raw.raw_data_encoding),
               (None, None))
        rep.eq("failure holder: name and traceback kept", (raw.name, raw.traceback),
               ("rust:TaskError", "Traceback: rust side\n"))
        await same_record("failure holder", rid)

    async def failure_text():
        rid = await create("failure text")
        await complete(rid, "FAILURE", body="plain error text")
        try:
            await (await rb.get(rid)).get()
            rep.check("failure text: Result.get() raises Exception(value)", False, "no exception")
        except Exception as e:
            rep.eq("failure text: Result.get() raises Exception(value)", (type(e).__name__, str(e)),
                   ("Exception", "plain error text"))

    async def failure_null():
        rid = await create("failure null")
        await complete(rid, "FAILURE", body=None)
        try:
            await (await rb.get(rid)).get()
            rep.check("failure null: Result.get() raises ResultFailed", False, "no exception")
        except ResultFailed:
            rep.check("failure null: Result.get() raises ResultFailed", True)

    for label, body in [("failure holder", failure_holder), ("failure text", failure_text),
                        ("failure null", failure_null)]:
        await case(label, body)

    # --- revocations ----------------------------------------------------------------------------
    async def revoked_with_value():
        rid = await create("revoked value")
        await start("revoked value", rid)
        res = await rb.get(rid)
        waiter = asyncio.create_task(res.wait(timeout=20))
        await asyncio.sleep(0.15)
        resp = await complete(rid, "REVOKED", body=None)
        rep.eq("revoked value: PUT value?state=REVOKED answers 200", resp.status, 200)
        await waiter
        rep.eq("revoked value: waited Result is REVOKED", res.state.value, "REVOKED")
        try:
            await res.get()
            rep.check("revoked value: Result.get() raises Revoked", False, "no exception")
        except Revoked:
            rep.check("revoked value: Result.get() raises Revoked", True)
        await same_record("revoked value", rid)

    async def revoked_by_patch():
        rid = await create("revoked patch")
        resp = http.patch(f"/results/{rid}", {"state": "REVOKED"})
        rep.eq("revoked patch: PATCH REVOKED answers 200", resp.status, 200)
        res = await rb.get(rid)
        await res.wait(timeout=5)
        try:
            await res.get()
            rep.check("revoked patch: without a value Result.get() raises ResultValueLost", False, "no exception")
        except ResultValueLost:
            rep.check("revoked patch: without a value Result.get() raises ResultValueLost", True)
        v = http.get(f"/results/{rid}/value")
        rep.eq("revoked patch: resultd answers 410 value-expired", (v.status, v.problem_code()),
               (410, "value-expired"))
        await same_record("revoked patch", rid)

    await case("revoked value", revoked_with_value)
    await case("revoked patch", revoked_by_patch)

    async def invalid():
        rid = await create("invalid")
        resp = await complete(rid, "INVALID", body="unknown task")
        rep.eq("invalid: PUT value?state=INVALID answers 200", resp.status, 200)
        res = await rb.get(rid)
        rep.eq("invalid: mognet reads INVALID, done and failed", (res.state.value, res.done, res.failed),
               ("INVALID", True, True))
        try:
            await res.get()
            rep.check("invalid: Result.get() raises Exception(value)", False, "no exception")
        except Exception as e:
            rep.eq("invalid: Result.get() raises Exception(value)", (type(e).__name__, str(e)),
                   ("Exception", "unknown task"))

    async def mixed():
        # A Python client submits (mognet writes PENDING); a non-Python worker runs it over HTTP.
        res = Result(rb, id=uuid4(), name="py.submitted", state=ResultState.PENDING,
                     created=datetime.now(tz=timezone.utc), request_kwargs_repr="7")
        await rb.set(res.id, res)
        await res.set_metadata(submitted_by="python")
        r.hset(result_key(app_name, res.id), "x_extra", '"kept"')
        rid = str(res.id)
        await start("mixed", rid)
        waiter = asyncio.create_task(res.wait(timeout=20))
        await asyncio.sleep(0.15)
        resp = await complete(rid, "SUCCESS", body={"ran": "elsewhere"})
        rep.eq("mixed: completing a mognet-written result answers 200", resp.status, 200)
        await waiter
        rep.eq("mixed: Result.wait() sees SUCCESS with mognet's own fields kept",
               (res.state.value, res.name, res.request_kwargs_repr, res.number_of_starts, res.number_of_stops),
               ("SUCCESS", "py.submitted", "7", 1, 1))
        rep.eq("mixed: Result.get() returns the HTTP value", await res.get(), {"ran": "elsewhere"})
        rep.eq("mixed: metadata written by mognet is kept", await res.get_metadata(), {"submitted_by": "python"})
        rep.eq("mixed: a field mognet does not know survives", r.hget(result_key(app_name, rid), "x_extra"),
               b'"kept"')
        await same_record("mixed", rid)

    async def deleted():
        parent = await create("delete")
        kid = await create("delete kid")
        http.post(f"/results/{parent}/children", {"ids": [kid]})
        http.patch(f"/results/{parent}/metadata", {"a": 1})
        await complete(parent, "SUCCESS", body=1)
        resp = http.delete(f"/results/{parent}", recursive="true")
        rep.eq("delete: DELETE answers 204", resp.status, 204)
        rep.eq("delete: mognet finds neither result", (await rb.get(parent), await rb.get(kid)), (None, None))
        rep.eq("delete: no metadata or children left for mognet",
               (await rb.get_metadata(parent), await rb.get_children_count(parent)), ({}, 0))
        try:
            await rb.get_value(parent)
            rep.check("delete: the value is gone (ResultValueLost)", False, "no exception")
        except ResultValueLost:
            rep.check("delete: the value is gone (ResultValueLost)", True)

    for label, body in [("invalid", invalid), ("mixed", mixed), ("delete", deleted)]:
        await case(label, body)

    # --- metadata -------------------------------------------------------------------------------
    async def metadata():
        rid = await create("metadata")
        sent = {"user": "alice", "priority": 5, "tags": ["a", "b"], "nested": {"k": None, "ü": 1.5},
                "big": 2 ** 70, "text": "ünïcode ✓ \U0001F600"}
        resp = http.patch(f"/results/{rid}/metadata", sent)
        rep.eq("metadata: PATCH answers 200", resp.status, 200)
        res = await rb.get(rid)
        rep.eq("metadata: get_metadata() equals what was sent", await res.get_metadata(), sent)
        http.patch(f"/results/{rid}/metadata", {"priority": 6, "tags": None})
        want = {k: v for k, v in sent.items() if k != "tags"}
        want["priority"] = 6
        rep.eq("metadata: a merge with null removes a key for get_metadata()", await res.get_metadata(), want)
        mkey = result_key(app_name, rid) + "/metadata"
        rep.check("metadata: TTL is result_ttl", ttl_near(mkey, RESULT_TTL), r.ttl(mkey))

    await case("metadata", metadata)

    # --- children -------------------------------------------------------------------------------
    async def children():
        parent = await create("children parent")
        kids = [await create(f"children kid {i}") for i in range(2)]
        resp = http.post(f"/results/{parent}/children", {"ids": kids})
        rep.eq("children: POST answers 200", resp.status, 200)
        res = await rb.get(parent)
        rep.eq("children: Result.children.count() is 2", await res.children.count(), 2)
        ids = sorted([str(i) async for i in res.children.iter_ids()])
        rep.eq("children: Result.children.iter_ids() lists them", ids, sorted(kids))
        inst = sorted([(str(c.id), str(c.parent_id)) async for c in res.children.iter_instances()])
        rep.eq("children: iter_instances() have parent_id set", inst, sorted((k, parent) for k in kids))
        ckey = result_key(app_name, parent) + "/children"
        rep.check("children: TTL is result_ttl", ttl_near(ckey, RESULT_TTL), r.ttl(ckey))

    await case("children", children)

    # --- state ----------------------------------------------------------------------------------
    state_names = ["state: PUT object read by State.get()", "state: missing field gives the default",
                   "state: PATCH null removes for State.get()", "state: PATCH sets for State.get()",
                   "state: increment read by State.get()", "state: field PUT read by State.get()",
                   "state: TTL is state_ttl"]
    if not state_routes_available(http):
        for n in state_names:
            rep.skip(n, STATE_ROUTE_MISSING)
    else:
        async def state():
            rid = str(uuid4())
            st = State(app, rid)
            app_q = urllib.parse.quote(app_name, safe="")
            base = f"/state/{app_q}/{rid}"
            put = {"progress": {"step": 3, "of": 10}, "counter": 7, "name": "ünïcode", "big": 2 ** 70}
            resp = http.put(base, put)
            rep.check(state_names[0], resp.status in (200, 201) and
                      same({k: await st.get(k) for k in put}, put), f"{resp!r}")
            rep.eq(state_names[1], await st.get("missing", "DEFAULT"), "DEFAULT")
            http.patch(base, {"counter": None, "extra": [1, 2]})
            rep.eq(state_names[2], await st.get("counter", "DEFAULT"), "DEFAULT")
            rep.eq(state_names[3], await st.get("extra"), [1, 2])
            http.post(f"{base}/hits/increment", {"by": 5})
            http.post(f"{base}/hits/increment", {"by": 2})
            rep.eq(state_names[4], await st.get("hits"), 7)
            http.put(f"{base}/flag", True)
            rep.eq(state_names[5], await st.get("flag"), True)
            skey = f"{app_name}.mognet.state.{rid}"
            rep.check(state_names[6], STATE_TTL - 30 <= r.ttl(skey) <= STATE_TTL, r.ttl(skey))

        await case("state", state)

    await rb.close()
    await sb.close()


def main():
    args = parse_args(__doc__, extra_args)
    rep = Report(f"resultd_writes ({args.compression})")
    start_watchdog(rep)
    try:
        asyncio.run(run(args, rep))
    except Exception as e:
        rep.error("resultd_writes", e)
    rep.emit()


if __name__ == "__main__":
    main()
