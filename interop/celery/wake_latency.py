"""Wake latency of an HTTP long poll on a real Celery worker, against Celery's own `AsyncResult.get()`.

`wake_latency.py N` sends N `sleepy(0.05)` tasks (each returns `time.time()` at the end of its
work). Before they are sent, every task has one HTTP long poll (`GET /celery/results/{id}?wait=`)
and one `AsyncResult.get()` waiting on it, all at once. For each waiter the latency is its receipt
time minus the task's end; the report's `measurements` hold p50/p99/max in ms both ways and the
channel gauge after the run. Checks are about correctness only (every waiter woken with the task's
value, the gauge back to 0), never about timing.
"""

import threading
import time
import uuid

from common import (
    Background, Http, Report, case, celery_app, eventually, parse_args, percentile, start_watchdog,
    task_key, wait_for_worker,
)

WAIT = 120
SLEEP = 0.05


def extra(p):
    p.add_argument("n", type=int, help="number of tasks")


def summary(values: list) -> dict:
    ms = [v * 1000.0 for v in values]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 2) if ms else None,
            "p99_ms": round(percentile(ms, 99), 2) if ms else None,
            "max_ms": round(max(ms), 2) if ms else None}


def run(args, rep: Report) -> None:
    tasks = celery_app()
    app = tasks.app
    http = Http(args.resultd, timeout=WAIT + 30)
    if not rep.check("a worker answers a ping", wait_for_worker(app), "no worker within 60 s"):
        return
    ids = [str(uuid.uuid4()) for _ in range(args.n)]
    start = threading.Barrier(2 * args.n + 1)

    def http_wait(tid):
        start.wait()
        resp = http.result(tid, wait=WAIT)
        return resp.received_at, resp

    def celery_wait(tid):
        res = app.AsyncResult(tid)
        start.wait()
        value = res.get(timeout=WAIT)
        return time.time(), value

    http_waits = [Background(http_wait, tid) for tid in ids]
    celery_waits = [Background(celery_wait, tid) for tid in ids]
    start.wait()

    # Every wait must be in place before the first task is sent.
    held = eventually(lambda: http.channels() == args.n, 60, every=0.05)
    rep.check("every HTTP wait is subscribed (one channel per task)", bool(held), http.channels())
    client = app.backend.client

    def celery_subscribed():
        counts = dict(client.pubsub_numsub(*[task_key(args.key_prefix, tid) for tid in ids]))
        return all(c >= 2 for c in counts.values())

    rep.check("every AsyncResult.get() is subscribed too", bool(eventually(celery_subscribed, 60, every=0.05)))

    for tid in ids:
        tasks.sleepy.apply_async((SLEEP,), task_id=tid)

    http_lat, celery_lat, http_bad, celery_bad = [], [], [], []
    for tid, hw, cw in zip(ids, http_waits, celery_waits):
        try:
            received, resp = hw.join(WAIT + 60)
            body = resp.json() if resp.status == 200 else {}
            if body.get("status") == "SUCCESS" and isinstance(body.get("result"), float):
                http_lat.append(received - body["result"])
            else:
                http_bad.append(f"{tid}: {resp!r}")
        except Exception as e:  # noqa: BLE001
            http_bad.append(f"{tid}: {e!r}")
        try:
            received, value = cw.join(WAIT + 60)
            celery_lat.append(received - value)
        except Exception as e:  # noqa: BLE001
            celery_bad.append(f"{tid}: {e!r}")

    rep.check("every HTTP long poll is woken with the task's result", not http_bad, http_bad[:5])
    rep.check("every AsyncResult.get() returns the task's result", not celery_bad, celery_bad[:5])
    after = eventually(lambda: http.channels() == 0, 30, every=0.1)
    rep.check("the channel gauge is back to 0", bool(after), http.channels())
    rep.measure("tasks", args.n)
    rep.measure("http_long_poll", summary(http_lat))
    rep.measure("celery_get", summary(celery_lat))
    rep.measure("channels_after", http.channels())


def main() -> None:
    args = parse_args(__doc__, extra)
    rep = Report("wake_latency.py")
    start_watchdog(rep, 100.0 + args.n)
    case(rep, "run", lambda: run(args, rep))
    rep.emit()


if __name__ == "__main__":
    main()
