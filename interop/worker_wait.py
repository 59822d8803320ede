"""A real mognet Worker finishes a task while an HTTP client long-polls resultd for its result.

The worker runs in this process through `App.start()` with mognet's InMemoryBroker (patched so it
consumes; no AMQP). For each task an HTTP client holds `GET /results/{id}?wait=30` from right
after submission; it must be answered when the worker finishes, with the worker's record and
value. The latency from the record's `finished` timestamp to the HTTP answer is measured, next to
that of mognet's own `Result.wait()` (which polls every 100 ms).
"""

import asyncio
import logging
import os
import statistics
import sys
import time
import urllib.parse

from mognet import App, AppConfig, Context, Request, task
from mognet.broker.memory_broker import InMemoryBroker

from common import STATE_ROUTE_MISSING, Http, Report, parse_args, parse_ts, state_routes_available, start_watchdog

NODE_ID = "interop-worker@resultd-tests"
RUNS = 5
TASK_SECONDS = 0.8
TEARDOWN_SECONDS = 20


class _Broker(InMemoryBroker):
    # InMemoryBroker's consume gate starts closed and is only opened by set_task_prefetch(), which
    # the worker never calls while the prefetch stays 1.
    async def setup_task_queue(self, queue):
        await super().setup_task_queue(queue)
        self._update_task_event()


class LocalApp(App):
    def _create_broker(self):
        return _Broker()


@task(name="interop.slow_sum")
async def slow_sum(context: Context, a: int, b: int) -> dict:
    await context.state.set("stage", {"running": True, "a": a})
    await asyncio.sleep(TASK_SECONDS)
    return {"sum": a + b, "ü": "é ✓", "big": 2 ** 70}


@task(name="interop.child")
async def child(context: Context, n: int) -> int:
    return n * 10


@task(name="interop.parent")
async def parent(context: Context, k: int) -> list:
    await context.set_metadata(phase="spawning", k=k)
    await asyncio.sleep(0.3)
    return [await context.run(Request(name="interop.child", args=(i,))) for i in range(k)]


@task(name="interop.fails")
async def fails(context: Context) -> None:
    await asyncio.sleep(0.3)
    raise KeyError("missing-thing")


@task(name="interop.sleeps")
async def sleeps(context: Context) -> None:
    await asyncio.sleep(30)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


async def run(args, rep: Report) -> None:
    http = Http(args.resultd, args.app)
    cfg = AppConfig.model_validate({
        "result_backend": {"redis": {"url": args.redis}},
        "state_backend": {"redis": {"url": args.redis}},
        "broker": {"amqp": {"url": "amqp://127.0.0.1:1/"}},
        "node_id": NODE_ID,
    })
    app = LocalApp(name=args.app, config=cfg)
    state_ok = state_routes_available(http)
    rep.measure("wake_mode", http.get("/health/ready").json().get("wake_mode"))

    async def long_poll(rid):
        return await asyncio.to_thread(http.get, f"/results/{rid}", wait=30, timeout=60)

    async def mognet_wait(res):
        await res.wait(timeout=30)
        return time.time()

    async def case(label, section):
        try:
            await section()
        except Exception as e:  # one broken section must not hide the others
            rep.error(label, e)

    async def timed_runs():
        http_latencies, mognet_latencies = [], []
        for i in range(RUNS):
            label = f"run {i}"
            req = Request(name="interop.slow_sum", args=(i, 2), metadata={"submitted_by": "interop"})
            res = await app.submit(req)
            poll = asyncio.create_task(long_poll(req.id))
            waited = asyncio.create_task(mognet_wait(res))
            submitted = time.monotonic()
            await asyncio.sleep(TASK_SECONDS / 2)
            if i == 0:
                name = "worker state is visible over /state while the task runs"
                if state_ok:
                    s = http.get(f"/state/{urllib.parse.quote(args.app, safe='')}/{req.id}")
                    rep.eq(name, (s.status, s.json() if s.status == 200 else s.body),
                           (200, {"stage": {"running": True, "a": 0}}))
                else:
                    rep.skip(name, STATE_ROUTE_MISSING)
            resp = await poll
            mognet_done_at = await waited
            if not rep.eq(f"{label}: the long-poll answers 200", resp.status, 200):
                continue
            body = resp.json()
            rep.eq(f"{label}: answered with the finished record",
                   (body.get("state"), body.get("done"), body.get("node_id"), body.get("number_of_starts"),
                    body.get("number_of_stops")), ("SUCCESS", True, NODE_ID, 1, 1))
            rep.check(f"{label}: the long-poll was held until the worker finished",
                      time.monotonic() - submitted >= TASK_SECONDS * 0.9,
                      f"answered {resp.elapsed:.3f}s after it was sent")
            fresh = await app.result_backend.get(req.id)
            value = await fresh.get()
            v = http.get(f"/results/{req.id}/value")
            rep.eq(f"{label}: the value is the worker's return value", v.json().get("raw_value"), value)
            rep.eq(f"{label}: finished equals the worker's", parse_ts(body.get("finished")), fresh.finished)
            finished = parse_ts(body["finished"]).timestamp()
            http_latencies.append(resp.received_at - finished)
            mognet_latencies.append(mognet_done_at - finished)
            meta = http.get(f"/results/{req.id}/metadata").json()
            rep.eq(f"{label}: metadata from Request.metadata", meta, await fresh.get_metadata())

        rep.check("every long-poll answered within 5 s of finished",
                  bool(http_latencies) and max(http_latencies) < 5, http_latencies)
        rep.check("no long-poll answered before finished",
                  bool(http_latencies) and min(http_latencies) > -0.005, http_latencies)
        if http_latencies:
            for name, xs in (("http_wait_latency_ms", http_latencies),
                             ("mognet_result_wait_latency_ms", mognet_latencies)):
                rep.measure(name, {"runs": len(xs), "min": ms(min(xs)), "median": ms(statistics.median(xs)),
                                   "max": ms(max(xs))})

    async def early_polls():
        # Long-polls sent before the task is even submitted: the record and the value.
        req = Request(name="interop.slow_sum", args=(40, 2))
        early = asyncio.create_task(long_poll(req.id))
        early_value = asyncio.create_task(asyncio.to_thread(
            http.get, f"/results/{req.id}/value", wait=30, timeout=60))
        await asyncio.sleep(0.3)
        await app.submit(req)
        resp, vresp = await early, await early_value
        rep.eq("early long-poll: answered with the finished record once submitted and run",
               (resp.status, resp.json().get("state")), (200, "SUCCESS"))
        value = await (await app.result_backend.get(req.id)).get()
        rep.eq("early value long-poll: answered with the worker's value",
               (vresp.status, vresp.json().get("raw_value") if vresp.status == 200 else vresp.body),
               (200, value))

    async def failing_task():
        req = Request(name="interop.fails")
        await app.submit(req)
        resp = await long_poll(req.id)
        rep.eq("failing task: the long-poll answers FAILURE", (resp.status, resp.json().get("state")),
               (200, "FAILURE"))
        rv = http.get(f"/results/{req.id}/value").json().get("raw_value") or {}
        rep.eq("failing task: the value names the worker's exception", (rv.get("name"), rv.get("message")),
               ("builtins:KeyError", "'missing-thing'"))

    async def parent_task():
        req = Request(name="interop.parent", args=(2,), metadata={"submitted_by": "interop"})
        await app.submit(req)
        resp = await long_poll(req.id)
        rep.eq("parent task: the long-poll answers SUCCESS", (resp.status, resp.json().get("state")),
               (200, "SUCCESS"))
        rep.eq("parent task: the value is the children's", http.get(f"/results/{req.id}/value").json(),
               {"value_type": "builtins:list", "raw_value": [0, 10]})
        fresh = await app.result_backend.get(req.id)
        ids = http.get(f"/results/{req.id}/children").json().get("ids")
        rep.eq("parent task: children equal Result.children.iter_ids()", ids,
               sorted([str(c) async for c in fresh.children.iter_ids()]))
        rep.eq("parent task: two children", len(ids or []), 2)
        for n, cid in enumerate(ids or []):
            c = http.get(f"/results/{cid}").json()
            rep.eq(f"parent task: child {n} is done with parent_id", (c.get("state"), c.get("parent_id")),
                   ("SUCCESS", str(req.id)))
        rep.eq("parent task: metadata merged from the request and the context",
               http.get(f"/results/{req.id}/metadata").json(),
               {"k": 2, "phase": "spawning", "submitted_by": "interop"})

    async def revoked_task():
        # A running task revoked with App.revoke: the long-poll answers REVOKED.
        req = Request(name="interop.sleeps")
        await app.submit(req)
        poll = asyncio.create_task(long_poll(req.id))
        await asyncio.sleep(0.5)
        running = http.get(f"/results/{req.id}").json().get("state")
        await app.revoke(req.id)
        resp = await poll
        rep.eq("revoked task: RUNNING, then the long-poll answers REVOKED",
               (running, resp.status, resp.json().get("state")), ("RUNNING", 200, "REVOKED"))

    await app.connect()
    worker = asyncio.create_task(app.start())
    await asyncio.sleep(0.3)
    for label, section in [("timed runs", timed_runs), ("early polls", early_polls),
                           ("failing task", failing_task), ("parent task", parent_task),
                           ("revoked task", revoked_task)]:
        await case(label, section)
    await stop_worker(app, worker, rep)


async def stop_worker(app, worker, rep: Report) -> None:
    """Closes the mognet app within TEARDOWN_SECONDS, or reports it with every task's stack on stderr.

    Every check has run by then: a close that never returns is mognet's, not resultd's, so it is a
    measurement, not a failure.
    """

    async def close():
        await app.close()
        worker.cancel()
        try:
            await worker
        except BaseException:
            pass

    try:
        await asyncio.wait_for(asyncio.shield(close()), TEARDOWN_SECONDS)
    except asyncio.TimeoutError:
        print(f"mognet App.close() did not return within {TEARDOWN_SECONDS}s; tasks:", file=sys.stderr)
        for t in asyncio.all_tasks():
            t.print_stack(file=sys.stderr)
        rep.measure("mognet_app_close", f"did not return within {TEARDOWN_SECONDS}s (stacks on stderr)")


def main():
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(__doc__)
    rep = Report("worker_wait")
    start_watchdog(rep)
    # Not asyncio.run: it would wait for every task mognet leaves behind, and a stuck one would
    # hold the finished report back until the watchdog.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run(args, rep))
    except Exception as e:
        rep.error("worker_wait", e)
    rep.emit()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
