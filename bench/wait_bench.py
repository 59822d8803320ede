#!/usr/bin/env python3
"""Long-poll benchmark of resultd: wake latency, Redis load of idle waiters, memory per held wait.

1. Wake latency: --waits long-polls (`GET /results/{id}?wait=30` on a RUNNING record, raw
   HTTP/1.1, --concurrency at a time). Each is held for a random 20–120 ms, then a foreign client
   writes `HSET {app}.mognet.result.{id} state "SUCCESS"` on a raw RESP socket (as a Python worker
   would, no publish); the time from sending that HSET to the last byte of the HTTP answer is the
   wake latency (p50, p99, max). With the interop venv (real mognet 2.0.0), the same is measured
   for mognet's own `Result.wait()` (polls `HGET state` every 100 ms) on the same Redis.
2. Redis commands per idle waiter per second: --idle-waiters waits held for --idle-seconds,
   `INFO commandstats` before and after (the INFO calls themselves left out); also for mognet.
3. Memory per held wait: the kit's `tools/longpoll_hold.py` holds --held waits (its own
   request line replaced by resultd's `GET /results/{id}?wait=N`; its measurement unchanged) and
   reports the server's RSS before, while held and after; the same against the kit's floor
   (its own `/results/lp-{i}/wait` route) when --floor-port is given.

Usage (bench/wait.sh starts Redis and resultd and calls this):
  wait_bench.py --redis-port N --resultd-port P --resultd-pid PID [--app bench] [--waits 1000]
      [--concurrency 10] [--idle-waiters 1000] [--idle-seconds 10] [--held 10000]
      [--hold-timeout 20] [--kit ../shared/bench] [--floor-port FP --floor-pid FPID]
      [--interop-venv .venv-interop] [--out DIR]
  wait_bench.py mognet --redis-port N ...   (runs inside the interop venv: the mognet side)
Standard library only (the mognet side imports mognet). Loopback only; every phase is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import io
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import benchlib as bl

HERE = Path(__file__).resolve().parent
PARK = (0.02, 0.12)  # seconds a wait is held before the write: random, so mognet's poll phase varies


def new_ids(n: int) -> list[str]:
    """n fresh result ids."""
    return [str(uuid.uuid4()) for _ in range(n)]


def seed_running(redis_port: int, app: str, ids: list[str]) -> None:
    """RUNNING records in mognet's bytes, pipelined."""
    r = bl.Redis(redis_port)
    try:
        cmds: list[tuple] = []
        for rid in ids:
            key = bl.result_key(app, rid)
            cmds += [bl.hset_args(key, bl.record_fields(rid, "RUNNING", "1, b=2")), ("EXPIRE", key, 3600)]
        r.pipeline(cmds)
    finally:
        r.close()


def summarise(lat_s: list[float]) -> dict:
    """p50/p99/max/mean in milliseconds."""
    xs = sorted(lat_s)
    if not xs:
        return {"n": 0}
    return {
        "n": len(xs),
        "p50_ms": round(bl.percentile(xs, 50) * 1e3, 3),
        "p99_ms": round(bl.percentile(xs, 99) * 1e3, 3),
        "max_ms": round(xs[-1] * 1e3, 3),
        "mean_ms": round(sum(xs) / len(xs) * 1e3, 3),
    }


# ---------------------------------------------------------------- raw HTTP/1.1
async def read_response(r: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    if length is None:
        raise ValueError(f"no Content-Length in {lines[:6]}")
    return status, await r.readexactly(length)


def wait_request(rid: str, seconds: int, app: str) -> bytes:
    """GET /results/{id}?wait=N as raw bytes."""
    return f"GET /results/{rid}?app={app}&wait={seconds} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


# ---------------------------------------------------------------- 1. wake latency
async def resultd_wake(a: argparse.Namespace) -> dict:
    """Wake latency of resultd's long-poll after a foreign HSET of the state field."""
    ids = new_ids(a.waits)
    seed_running(a.redis_port, a.app, ids)
    lat: list[float] = []
    problems: dict[str, int] = {}
    queue = list(ids)

    async def worker():
        r, w = await asyncio.open_connection(bl.LOOPBACK, a.resultd_port)
        red = await bl.AsyncRedis.connect(a.redis_port)
        try:
            while queue:
                rid = queue.pop()
                w.write(wait_request(rid, 30, a.app))
                await w.drain()
                try:
                    await asyncio.wait_for(r.readuntil(b"\r\n"), random.uniform(*PARK))
                    problems["answered before the write"] = problems.get("answered before the write", 0) + 1
                    await read_rest(r)
                    continue
                except TimeoutError:
                    pass
                t0 = time.perf_counter()
                await red.call("HSET", bl.result_key(a.app, rid), "state", '"SUCCESS"')
                status, body = await read_response(r)
                t1 = time.perf_counter()
                done = b'"done":true' in body
                if status != 200 or not done:
                    key = f"status {status} done={done}"
                    problems[key] = problems.get(key, 0) + 1
                    continue
                lat.append(t1 - t0)
        finally:
            w.close()
            red.close()

    t = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(a.concurrency))), timeout=60 + a.waits * 0.5)
    return {"what": "resultd GET ?wait=30", **summarise(lat), "problems": problems, "seconds": round(time.monotonic() - t, 1)}


async def read_rest(r: asyncio.StreamReader) -> None:
    """Drains a response whose status line was already read."""
    head = await r.readuntil(b"\r\n\r\n")
    for line in head.decode("latin-1").split("\r\n"):
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            await r.readexactly(int(v.strip()))


# ---------------------------------------------------------------- 2. idle waiters
async def resultd_idle(a: argparse.Namespace) -> dict:
    """Redis commands per idle resultd waiter per second."""
    ids = new_ids(a.idle_waiters)
    seed_running(a.redis_port, a.app, ids)
    red = bl.Redis(a.redis_port)
    conns = []
    readers = []
    try:
        c0 = bl.command_calls(red)
        for i, rid in enumerate(ids):
            r, w = await asyncio.open_connection(bl.LOOPBACK, a.resultd_port)
            w.write(wait_request(rid, 60, a.app))
            conns.append(w)
            readers.append(asyncio.create_task(r.readline()))
            if i % 200 == 199:
                await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        c1 = bl.command_calls(red)
        t1 = time.monotonic()
        await asyncio.sleep(a.idle_seconds)
        c2 = bl.command_calls(red)
        t2 = time.monotonic()
        answered = sum(1 for x in readers if x.done())
    finally:
        for w in conns:
            w.close()
        for x in readers:
            x.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        red.close()
    return idle_figures("resultd", c0, c1, c2, t2 - t1, len(ids), answered)


def idle_figures(what: str, c0: dict, c1: dict, c2: dict, secs: float, n: int, answered: int) -> dict:
    """Commands in the first 2 s (opening and settling, per wait) and while idle (per waiter per second).

    Redis counts the commands a script runs too: resultd's one EVALSHA read shows as
    evalsha + hgetall + pttl.
    """

    def delta(x, y):
        d = {k: y.get(k, 0) - x.get(k, 0) for k in y}
        d.pop("info", None)
        return {k: v for k, v in d.items() if v}

    reg, idle = delta(c0, c1), delta(c1, c2)
    return {
        "what": what,
        "waiters": n,
        "idle_seconds": round(secs, 2),
        "commands_first_2s_per_wait": round(sum(reg.values()) / n, 3),
        "first_2s_commands": reg,
        "idle_commands": idle,
        "commands_per_waiter_per_second": round(sum(idle.values()) / n / secs, 4),
        "answered_early": answered,
    }


# ---------------------------------------------------------------- 3. held waits (the kit's tool)
def load_hold_tool(kit: Path):
    """The kit's longpoll_hold.py as a module."""
    spec = importlib.util.spec_from_file_location("longpoll_hold", kit / "tools" / "longpoll_hold.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def hold(a: argparse.Namespace, port: int, pid: int, ids: list[str] | None) -> dict:
    """Runs the kit's hold measurement; with ids, each request is resultd's wait on ids[i]."""
    mod = load_hold_tool(Path(a.kit))
    if ids is not None:

        async def one(i, args, stats, all_sent):
            try:
                r, w = await asyncio.open_connection("127.0.0.1", args.port)
            except OSError as e:
                stats["connect_err"] += 1
                stats.setdefault("err_sample", str(e))
                return
            stats["connected"] += 1
            w.write(wait_request(ids[i], args.timeout, a.app))
            await w.drain()
            stats["sent"] += 1
            if stats["sent"] == args.n:
                all_sent.set()
            try:
                line = await r.readline()
                parts = line.split()
                code = parts[1].decode() if len(parts) > 1 else "eof"
                stats["codes"][code] = stats["codes"].get(code, 0) + 1
                stats["latencies"].append(time.monotonic())
            except Exception as e:  # noqa: BLE001 - the kit's tool counts every failure the same way
                stats["read_err"] += 1
                stats.setdefault("err_sample", repr(e))
            finally:
                w.close()

        mod.one = one
    ns = argparse.Namespace(port=port, n=a.held, timeout=a.hold_timeout, server_pid=pid, ramp=1000)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        asyncio.run(mod.main(ns))
    return json.loads(buf.getvalue().strip().splitlines()[-1])


# ---------------------------------------------------------------- the mognet side
async def mognet_side(a: argparse.Namespace) -> dict:
    """Result.wait() wake latency and idle polling load, with mognet 2.0.0's own backend."""
    from datetime import datetime, timezone

    from mognet import App, AppConfig
    from mognet.backend.redis_result_backend import RedisResultBackend
    from mognet.model.result import Result, ResultState

    url = f"redis://127.0.0.1:{a.redis_port}/0"
    cfg = AppConfig.model_validate(
        {"result_backend": {"redis": {"url": url}}, "state_backend": {"redis": {"url": url}}, "broker": {"amqp": {}}}
    )
    app = App(name=a.app, config=cfg)
    rb = RedisResultBackend(cfg.result_backend, app=app)
    await rb.connect()
    now = datetime.now(timezone.utc)

    async def make(n: int) -> list:
        out = []
        for _ in range(n):
            r = Result(rb, id=uuid.uuid4(), name="demo.add", state=ResultState.RUNNING, created=now)
            await rb.set(r.id, r)
            out.append(r)
        return out

    results = await make(a.waits)
    lat: list[float] = []
    problems: dict[str, int] = {}

    async def worker():
        red = await bl.AsyncRedis.connect(a.redis_port)
        try:
            while results:
                res = results.pop()
                task = asyncio.create_task(res.wait(timeout=30))
                await asyncio.sleep(random.uniform(*PARK))
                if task.done():
                    problems["returned before the write"] = problems.get("returned before the write", 0) + 1
                    continue
                t0 = time.perf_counter()
                await red.call("HSET", bl.result_key(a.app, str(res.id)), "state", '"SUCCESS"')
                await task
                lat.append(time.perf_counter() - t0)
        finally:
            red.close()

    t = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(a.concurrency))), timeout=60 + a.waits * 0.5)
    wake = {"what": "mognet Result.wait() (poll 0.1 s)", **summarise(lat), "problems": problems}
    wake["seconds"] = round(time.monotonic() - t, 1)

    idle_results = await make(a.idle_waiters)
    red = bl.Redis(a.redis_port)
    try:
        c0 = bl.command_calls(red)
        tasks = [asyncio.create_task(r.wait(timeout=a.idle_seconds + 30)) for r in idle_results]
        await asyncio.sleep(2.0)
        c1 = bl.command_calls(red)
        t1 = time.monotonic()
        await asyncio.sleep(a.idle_seconds)
        c2 = bl.command_calls(red)
        t2 = time.monotonic()
        answered = sum(1 for x in tasks if x.done())
        for x in tasks:
            x.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        red.close()
    idle = idle_figures("mognet Result.wait()", c0, c1, c2, t2 - t1, len(idle_results), answered)
    return {"wake": wake, "idle": idle}


def run_mognet(a: argparse.Namespace) -> dict | None:
    """The mognet side in the interop venv's Python, or None when there is no such venv."""
    py = Path(a.interop_venv) / "bin" / "python"
    if not py.exists() or subprocess.run([str(py), "-c", "import mognet"], capture_output=True, check=False).returncode:
        print(f"# no interop venv with mognet at {a.interop_venv}: mognet comparison skipped", file=sys.stderr)
        return None
    cmd = [str(py), str(HERE / "wait_bench.py"), "mognet", "--redis-port", str(a.redis_port), "--app", a.app]
    cmd += ["--waits", str(a.waits), "--concurrency", str(a.concurrency)]
    cmd += ["--idle-waiters", str(a.idle_waiters), "--idle-seconds", str(a.idle_seconds)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300 + a.waits, check=False)
    if p.returncode:
        print(f"# mognet side failed: {p.stderr.strip()[-800:]}", file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- main
def report(res: dict) -> list[str]:
    """Human-readable lines of the figures."""
    out = ["", "## wake latency (foreign HSET of state -> HTTP answer / Result.wait() return)"]
    for w in res["wake"]:
        out.append(
            f"- {w['what']}: n={w['n']} p50 {w.get('p50_ms')} ms, p99 {w.get('p99_ms')} ms, "
            f"max {w.get('max_ms')} ms, mean {w.get('mean_ms')} ms; problems {w['problems'] or 'none'}"
        )
    out.append("## Redis commands of idle waiters")
    for i in res["idle"]:
        out.append(
            f"- {i['what']}: {i['waiters']} waiters for {i['idle_seconds']} s: "
            f"{i['commands_per_waiter_per_second']} commands per waiter per second "
            f"({i['idle_commands'] or 'none'}); {i['commands_first_2s_per_wait']} commands per wait "
            f"in the first 2 s, opening included ({i['first_2s_commands']}); answered early {i['answered_early']}"
        )
    out.append("## memory per held wait (kit tools/longpoll_hold.py)")
    for name, h in res["hold"].items():
        out.append(
            f"- {name}: {h.get('connected')} held, codes {h.get('codes')}, connect_err {h.get('connect_err')}, "
            f"read_err {h.get('read_err')}, RSS {h.get('rss_before_kib')} -> {h.get('rss_held_kib')} -> "
            f"{h.get('rss_after_kib')} KiB, {h.get('rss_per_conn_bytes')} B per held wait, "
            f"replies {h.get('first_reply_s')}..{h.get('last_reply_s')} s"
        )
    return out


def main() -> int:
    """Runs the three phases (or the mognet side) and prints JSON plus a readable summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("side", nargs="?", default="resultd", choices=["resultd", "mognet"])
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--resultd-port", type=int, default=0)
    p.add_argument("--resultd-pid", type=int, default=0)
    p.add_argument("--app", default="bench")
    p.add_argument("--waits", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--idle-waiters", type=int, default=1000)
    p.add_argument("--idle-seconds", type=float, default=10.0)
    p.add_argument("--held", type=int, default=10000)
    p.add_argument("--hold-timeout", type=int, default=20)
    p.add_argument("--kit", default=str(HERE.parent.parent / "shared" / "bench"))
    p.add_argument("--floor-port", type=int, default=0)
    p.add_argument("--floor-pid", type=int, default=0)
    p.add_argument("--interop-venv", default=os.environ.get("INTEROP_VENV", str(HERE.parent / ".venv-interop")))
    p.add_argument("--out", default="")
    a = p.parse_args()
    if not (1 <= a.waits <= 100000 and 1 <= a.concurrency <= 200 and 1 <= a.idle_waiters <= 5000):
        p.error("waits 1..100000, concurrency 1..200, idle-waiters 1..5000")
    if not (0 < a.held <= 19000 and 0 < a.hold_timeout <= 60 and 0 < a.idle_seconds <= 60):
        p.error("held 1..19000, hold-timeout 1..60, idle-seconds 1..60")

    if a.side == "mognet":
        print(json.dumps(asyncio.run(mognet_side(a))))
        return 0
    if not a.resultd_port:
        p.error("--resultd-port is required")

    res: dict = {"wake": [], "idle": [], "hold": {}}
    print(f"# wake latency: {a.waits} waits, {a.concurrency} at a time", file=sys.stderr)
    res["wake"].append(asyncio.run(resultd_wake(a)))
    print(f"# idle waiters: {a.idle_waiters} for {a.idle_seconds} s", file=sys.stderr)
    res["idle"].append(asyncio.run(resultd_idle(a)))
    m = run_mognet(a)
    if m:
        res["wake"].append(m["wake"])
        res["idle"].append(m["idle"])
    print(f"# held waits: {a.held} for {a.hold_timeout} s (kit longpoll_hold.py)", file=sys.stderr)
    ids = new_ids(a.held)
    seed_running(a.redis_port, a.app, ids)
    res["hold"]["resultd"] = hold(a, a.resultd_port, a.resultd_pid, ids)
    if a.floor_port:
        res["hold"]["floor"] = hold(a, a.floor_port, a.floor_pid, None)

    text = json.dumps(res, indent=1)
    lines = report(res)
    print(text)
    print("\n".join(lines))
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "wait.json").write_text(text + "\n")
        (Path(a.out) / "wait.md").write_text("\n".join(lines) + "\n")
    bad = [w for w in res["wake"] if w["problems"]] + [h for h in res["hold"].values() if h.get("read_err") or h.get("connect_err")]
    return 3 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
