#!/usr/bin/env python3
"""Side-by-side HTTP throughput of resultd against the bench kit's baselines, with wrk.

The method is the kit's (`../shared/bench/run_bench.sh compare`), with per-target URLs and
bodies, because resultd reads mognet's layout (UUID ids, 11 JSON cells, a gzip value hash) while
the baselines read plain `res:{id}` hashes:

* scenarios: `hash` = GET the record, `value` = GET the value (sent with `Accept-Encoding: gzip`
  to every target, so resultd passes its gzip-stored bytes through), `put` = PUT a record of
  ~220 B (the kit's 10-field body to the baselines, a mognet record body of the same length to
  resultd, always on one fixed id, as the kit does); `put_spread` = the same PUT with resultd's
  id varied per request (each wrk thread cycles over 4096 ids of its own, one writer per result
  as with real workers; the baselines get the kit's PUT unchanged); optional `value_inflate` =
  the value without `Accept-Encoding` (resultd inflates).
* sizes: `b100` and `b10k` for the GET scenarios (mognet records of the same sizes are seeded for
  resultd), one size `b220` for the PUTs (the kit's body is the same for every id).
* order: for each scenario, size and round, resultd then baseline 1, resultd then baseline 2
  (A B A C), so every baseline run has a resultd run right before it.
* each run: `wrk -t2 -c50 -d<duration>s --latency`; req/s, p50, p99, bytes per response,
  non-2xx and socket errors, and the CPU of the machine, the server, Redis, wrk and "other"
  (everything else on the box). A run with other > --suspect-cpu % is flagged suspect; a run
  with any non-2xx or socket error is flagged ERRORS. Neither is counted in the medians (when a
  scenario has no clean run at all, its suspect runs are used and the table says so); error runs
  are listed and make the exit status 3.
* summary: per scenario and size, the median [min..max] req/s of each target, p50/p99 medians,
  resultd/baseline of the medians and the median of the paired ratios (each baseline run against
  the resultd run just before it).

Usage (bench/run.sh starts everything and calls this):
  throughput.py --redis-port 6400 --redis-pid 123 --resultd http://127.0.0.1:8080 --resultd-pid 456 \
      [--floor URL --floor-pid PID] [--fastapi URL --fastapi-pid PID] [--app bench] \
      [--rounds 3] [--duration 10] [--scenarios "hash value put put_spread"] [--out DIR]
Standard library only; wrk from Debian's packages. Loopback only; every wrk run is bounded.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import benchlib as bl

SIZES = {
    "hot": ["b100", "b10k"],
    "hot_value": ["b100", "b10k"],
    "cold": ["c100"],
    "cold_value": ["c100"],
    "running": ["b100"],
    "put": ["b220"],
    "put_spread": ["b220"],
    "value_inflate": ["b100", "b10k"],
}
# Older names of the hot scenarios.
ALIASES = {"hash": "hot", "value": "hot_value"}
# The HTTP-only ceiling answers one fixed record: it bounds the scenarios that read one key again.
CEILING_SCENARIOS = {"hot", "hot_value"}
# put_spread: each wrk thread cycles over 4096 ids of its own, so concurrent PUTs rarely meet on
# one record (what a fleet of workers does: one writer per result).
SPREAD_LUA = """
__tid = 0
function setup(thread) thread:set("tid", __tid); __tid = __tid + 1 end
local n = 0
function request()
  n = (n + 1) % 4096
  return wrk.format(nil, string.format("/results/00000000-0000-4000-8%03x-%012x", tid, n))
end
"""


def round_robin_lua(path_format: str, count: int) -> str:
    """A wrk script whose threads walk `count` paths round-robin (`path_format` % n), each thread
    starting at its own offset."""
    return f"""
__tid = 0
function setup(thread) thread:set("tid", __tid); __tid = __tid + 1 end
local n = -1
function request()
  if n < 0 then n = (tid * 49999) % {count} end
  n = (n + 1) % {count}
  return wrk.format(nil, string.format("{path_format}", n))
end
"""


ALL_SCENARIOS = list(SIZES)
LOOPBACK_URL = re.compile(r"^http://(127\.[0-9.]+|localhost|\[::1\]):[0-9]+$")
# The kit's PUT as webdis takes it (run_bench.sh url_for).
WEBDIS_PUT = (
    "/HSET/res:b100-w/status/running/task_name/xxxxxxxxxx/worker/w-1234567/created_at/1700000000/"
    "started_at/1700000001/finished_at/1700000002/content_type/text%2Fplain/encoding/identity/size/100/retries/0"
)


@dataclass
class Req:
    """One HTTP request a wrk run repeats."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    lua: str = ""  # extra wrk Lua (e.g. a request() that varies the path)


@dataclass
class Target:
    """A server under test: `resultd` (mognet's layout and routes), `rest` (the kit's routes over
    res:* keys: the floor, FastAPI), `ceiling` (the kit's HTTP-only ceiling) or `webdis`."""

    name: str
    base: str
    pid: int
    kind: str
    cold: int = 100_000

    def serves(self, scenario: str) -> bool:
        """Whether this target takes part in a scenario."""
        return self.kind != "ceiling" or scenario in CEILING_SCENARIOS

    def request(self, scenario: str, size: str) -> Req:
        """The request of one scenario and size for this target."""
        gz = {"Accept-Encoding": "gzip"}
        json_ct = {"Content-Type": "application/json"}
        b = self.base
        if self.kind == "resultd":
            rid = {"b100": bl.ID_B100, "b10k": bl.ID_B10K}.get(size, bl.ID_PUT)
            cold = bl.COLD_ID_FORMAT.replace("{n:012x}", "%012x")
            return {
                "hot": lambda: Req("GET", f"{b}/results/{rid}"),
                "hot_value": lambda: Req("GET", f"{b}/results/{rid}/value", gz),
                "value_inflate": lambda: Req("GET", f"{b}/results/{rid}/value"),
                "cold": lambda: Req(
                    "GET", f"{b}/results/{bl.cold_id(0)}", lua=round_robin_lua(f"/results/{cold}", self.cold)
                ),
                "cold_value": lambda: Req(
                    "GET",
                    f"{b}/results/{bl.cold_id(0)}/value",
                    gz,
                    lua=round_robin_lua(f"/results/{cold}/value", self.cold),
                ),
                "running": lambda: Req("GET", f"{b}/results/{bl.ID_RUNNING}"),
                "put": lambda: Req("PUT", f"{b}/results/{bl.ID_PUT}", json_ct, bl.resultd_put_body()),
                # the URL is the first id the Lua script writes; wrk varies it per request
                "put_spread": lambda: Req(
                    "PUT",
                    f"{b}/results/00000000-0000-4000-8000-000000000001",
                    json_ct,
                    bl.resultd_put_body(),
                    SPREAD_LUA,
                ),
            }[scenario]()
        if self.kind == "ceiling":
            return Req("GET", f"{b}/results/b100")
        key = "b100" if scenario == "running" else size
        if self.kind == "webdis":
            return {
                "hot": lambda: Req("GET", f"{b}/HGETALL/res:{key}"),
                "running": lambda: Req("GET", f"{b}/HGETALL/res:{key}"),
                "hot_value": lambda: Req("GET", f"{b}/GET/res:{key}:value.bin", gz),
                "value_inflate": lambda: Req("GET", f"{b}/GET/res:{key}:value.bin"),
                "cold": lambda: Req("GET", f"{b}/HGETALL/res:c0", lua=round_robin_lua("/HGETALL/res:c%d", self.cold)),
                "cold_value": lambda: Req(
                    "GET", f"{b}/GET/res:c0:value.bin", gz, lua=round_robin_lua("/GET/res:c%d:value.bin", self.cold)
                ),
                "put": lambda: Req("GET", f"{b}{WEBDIS_PUT}"),
                "put_spread": lambda: Req("GET", f"{b}{WEBDIS_PUT}"),
            }[scenario]()
        return {
            "hot": lambda: Req("GET", f"{b}/results/{key}"),
            "running": lambda: Req("GET", f"{b}/results/{key}"),
            "hot_value": lambda: Req("GET", f"{b}/results/{key}/value", gz),
            "value_inflate": lambda: Req("GET", f"{b}/results/{key}/value"),
            "cold": lambda: Req("GET", f"{b}/results/c0", lua=round_robin_lua("/results/c%d", self.cold)),
            "cold_value": lambda: Req(
                "GET", f"{b}/results/c0/value", gz, lua=round_robin_lua("/results/c%d/value", self.cold)
            ),
            # the kit PUTs to {id}-w so the GET keys stay intact
            "put": lambda: Req("PUT", f"{b}/results/b100-w", json_ct, bl.KIT_PUT_BODY),
            "put_spread": lambda: Req("PUT", f"{b}/results/b100-w", json_ct, bl.KIT_PUT_BODY),
        }[scenario]()


# ---------------------------------------------------------------- seeding
def seed(redis_port: int, app: str, cold: int) -> list[str]:
    """Writes the resultd records in mognet's exact bytes, and the baselines' cold set next to
    the kit's keys; returns a description of each."""
    r = bl.Redis(redis_port)
    notes = []
    try:
        specs = [
            (bl.ID_B100, bl.record_of_size(bl.ID_B100, 100), bl.small_holder(100), False),
            (bl.ID_B10K, bl.record_of_size(bl.ID_B10K, 10240), bl.holder_of_size(10240), True),
        ]
        cmds: list[tuple] = []
        for rid, rec, holder, gz in specs:
            key = bl.result_key(app, rid)
            cmds += [("DEL", key, key + "/value"), bl.hset_args(key + "/value", bl.value_fields(holder, gz))]
            cmds += [("EXPIRE", key + "/value", 604800), bl.hset_args(key, rec), ("EXPIRE", key, 1814400)]
        running = bl.result_key(app, bl.ID_RUNNING)
        cmds += [("DEL", running), bl.hset_args(running, bl.record_of_size(bl.ID_RUNNING, 100, "RUNNING"))]
        cmds += [("EXPIRE", running, 1814400), ("DEL", bl.result_key(app, bl.ID_PUT))]
        r.pipeline(cmds)
        for rid, rec, holder, gz in specs:
            cells = sum(len(v.encode()) for v in rec.values())
            names = sum(len(k) for k in rec)
            stored = len(bl.value_fields(holder, gz)["contents"])
            notes.append(
                f"{bl.result_key(app, rid)}: 11 cells of {cells} B (+{names} B of names); "
                f"value holder {len(holder)} B stored {'gzip ' + str(stored) + ' B' if gz else 'plain'}"
            )
        notes.append(f"{running}: the b100 record in state RUNNING (never cached)")
        # The cold set: `cold` b100-sized done records with 100 B plain values, and for the
        # baselines `cold` copies of the kit's b100 hash and value under res:c{n}.
        holder = bl.value_fields(bl.small_holder(100), False)
        kit_value = "v" * 100
        cmds = []
        for n in range(cold):
            rid = bl.cold_id(n)
            key = bl.result_key(app, rid)
            cmds += [bl.hset_args(key, bl.record_of_size(rid, 100)), ("EXPIRE", key, 1814400)]
            cmds += [bl.hset_args(key + "/value", holder), ("EXPIRE", key + "/value", 604800)]
            cmds += [bl.hset_args(f"res:c{n}", bl.KIT_B100_FIELDS), ("SET", f"res:c{n}:value", kit_value)]
            if len(cmds) >= 12_000:
                r.pipeline(cmds)
                cmds = []
        r.pipeline(cmds)
        notes.append(
            f"cold set: {cold} done b100 records with 100 B values ({bl.cold_id(0)} … {bl.cold_id(cold - 1)}), "
            f"and res:c0 … res:c{cold - 1} for the baselines"
        )
    finally:
        r.close()
    return notes


def check(target: Target, scenario: str, size: str) -> str | None:
    """None when the request answers 2xx (and resultd's answers look right), else why not."""
    q = target.request(scenario, size)
    try:
        status, headers, body = bl.http(q.method, q.url, q.body.encode() if q.body else None, q.headers)
    except OSError as e:
        return f"{q.method} {q.url}: {e}"
    if not 200 <= status < 300:
        return f"{q.method} {q.url} answered {status}: {body[:200]!r}"
    if target.kind == "resultd" and scenario == "hot_value":
        want_gzip = size == "b10k"
        if (headers.get("Content-Encoding") == "gzip") != want_gzip:
            return f"{q.url}: Content-Encoding {headers.get('Content-Encoding')!r}, expected gzip={want_gzip}"
    if target.kind == "resultd" and scenario in ("hot", "cold") and b'"done":true' not in body:
        return f"{q.url}: record is not done: {body[:200]!r}"
    if target.kind == "resultd" and scenario == "running" and b'"done":false' not in body:
        return f"{q.url}: record is done: {body[:200]!r}"
    return None


def cache_counts(target: Target) -> tuple[int, int] | None:
    """resultd's cache hits and misses so far (sums over labels), or None without the metrics."""
    try:
        status, _, body = bl.http("GET", f"{target.base}/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    sums = {"hits": 0.0, "misses": 0.0}
    seen = False
    for line in body.decode(errors="replace").splitlines():
        m = re.match(r'^resultd_cache_requests_total\{outcome="(hit|miss)"\}\s+([0-9.eE+]+)$', line)
        if m:
            seen = True
            sums["hits" if m.group(1) == "hit" else "misses"] += float(m.group(2))
    return (int(sums["hits"]), int(sums["misses"])) if seen else None


# ---------------------------------------------------------------- one wrk run
def lua_script(q: Req) -> str:
    """A wrk script that sets the method, headers and body."""
    lines = [f'wrk.method = "{q.method}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in q.headers.items()]
    if q.body is not None:
        assert "]==]" not in q.body
        lines.append(f"wrk.body = [==[{q.body}]==]")
    return "\n".join(lines) + "\n" + q.lua


def jiffies(pids: list[int]) -> int:
    """utime+stime of the processes and their direct children, in clock ticks."""
    total = 0
    seen = set()
    for pid in pids:
        kids = []
        try:
            kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            pass
        for p in [pid, *kids]:
            if p in seen:
                continue
            seen.add(p)
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
    return total


def cpu_total() -> tuple[int, int]:
    """(busy, total) jiffies of the machine, as the kit counts them."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = f[0] + f[1] + f[2] + f[5] + f[6]
    return busy, busy + f[3] + f[4]


UNITS_T = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
UNITS_B = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def to_ms(s: str) -> float | None:
    """wrk's 575.00us / 2.98ms / 1.20s as milliseconds."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", s)
    return float(m.group(1)) * UNITS_T[m.group(2)] if m else None


def parse_wrk(text: str) -> dict:
    """req/s, p50/p99 ms, bytes per response, non-2xx and socket errors from wrk's output."""
    out: dict = {"rps": 0.0, "p50": None, "p99": None, "requests": 0, "bytes": 0, "non2xx": 0, "sockerr": 0}
    if m := re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M):
        out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        if m := re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M):
            out[key] = to_ms(m.group(1))
    if m := re.search(r"^\s+(\d+) requests in [0-9.]+\w+, ([0-9.]+)(B|KB|MB|GB|TB) read", text, re.M):
        out["requests"] = int(m.group(1))
        out["bytes"] = int(float(m.group(2)) * UNITS_B[m.group(3)])
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        out["non2xx"] = int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        out["sockerr"] = sum(int(x) for x in m.groups())
    out["socket_detail"] = m.group(0) if m else ""
    return out


@dataclass
class Run:
    """The figures of one wrk run."""

    scenario: str
    size: str
    target: str
    round: str
    rps: float
    p50: float | None
    p99: float | None
    bytes_per_resp: int
    non2xx: int
    sockerr: int
    machine_cpu: int
    server_cpu: int
    redis_cpu: int
    wrk_cpu: int
    other_cpu: int
    suspect: bool
    errors: bool
    note: str
    cache_hits: int | None = None  # resultd's cache hits and misses during the run
    cache_misses: int | None = None

    def us_per_request(self, cpu_percent: int) -> float | None:
        """CPU microseconds per request of a process that used `cpu_percent` % during the run."""
        return cpu_percent / 100 * 1e6 / self.rps if self.rps > 0 else None


class Runner:
    """Runs wrk with the fixed settings and measures the CPU around it."""

    def __init__(self, a: argparse.Namespace, redis_pid: int):
        self.a = a
        self.redis_pid = redis_pid
        self.hz = os.sysconf("SC_CLK_TCK")
        self.ncpu = os.cpu_count() or 1
        self.out = Path(a.out)

    def run(self, target: Target, scenario: str, size: str, rnd: str) -> Run:
        """One bounded wrk run of `target`."""
        a = self.a
        q = target.request(scenario, size)
        stem = f"{scenario}_{size}_{target.name}_r{rnd}"
        script = self.out / f"{stem}.lua"
        script.write_text(lua_script(q))
        cmd = ["wrk", f"-t{a.threads}", f"-c{a.conns}", f"-d{a.duration}s", "--latency", "-s", str(script), q.url]
        if a.pin_gen:
            cmd = ["taskset", "-c", a.pin_gen, *cmd]
        cache0 = cache_counts(target) if target.kind == "resultd" else None
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c0, t0 = cpu_total()
        j0, r0 = jiffies([target.pid]), jiffies([self.redis_pid])
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.duration + 30, check=False)
            text = p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            text = f"wrk did not finish in time: {e}"
        c1, t1 = cpu_total()
        j1, r1 = jiffies([target.pid]), jiffies([self.redis_pid])
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cache1 = cache_counts(target) if cache0 is not None else None
        (self.out / f"{stem}.txt").write_text(text)
        w = parse_wrk(text)
        secs = max(1e-9, (t1 - t0) / self.hz / self.ncpu)
        mcpu = round(100 * self.ncpu * (c1 - c0) / max(1, t1 - t0))
        scpu = round(100 * (j1 - j0) / self.hz / secs)
        rcpu = round(100 * (r1 - r0) / self.hz / secs)
        gen = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        gcpu = round(100 * gen / secs)
        ocpu = mcpu - scpu - rcpu - gcpu
        errors = w["non2xx"] > 0 or w["sockerr"] > 0 or w["requests"] == 0
        notes = []
        if w["non2xx"]:
            notes.append(f"NON-2XX {w['non2xx']}")
        if w["sockerr"]:
            notes.append(w["socket_detail"])
        if w["requests"] == 0:
            notes.append("NO REQUESTS: " + text.strip().replace("\n", " ")[:120])
        suspect = ocpu > a.suspect_cpu
        if suspect:
            notes.append(f"OTHER-CPU-{ocpu}%:suspect")
        return Run(
            scenario,
            size,
            target.name,
            rnd,
            w["rps"],
            w["p50"],
            w["p99"],
            w["bytes"] // w["requests"] if w["requests"] else 0,
            w["non2xx"],
            w["sockerr"],
            mcpu,
            scpu,
            rcpu,
            gcpu,
            ocpu,
            suspect,
            errors,
            " ".join(notes),
            cache1[0] - cache0[0] if cache0 and cache1 else None,
            cache1[1] - cache0[1] if cache0 and cache1 else None,
        )


# ---------------------------------------------------------------- report
TSV_HEADER = (
    "scenario\tsize\ttarget\tround\treq_s\tp50_ms\tp99_ms\tB_per_resp\tnon2xx\tsocket_errors\t"
    "machine_cpu%\tserver_cpu%\tredis_cpu%\twrk_cpu%\tother_cpu%\tserver_us_per_req\tredis_us_per_req\t"
    "cache_hits\tcache_misses\tnotes"
)


def tsv(r: Run) -> str:
    """One run as a results.tsv line."""

    def f(x):
        return "NA" if x is None else f"{x:.3f}"

    return "\t".join(
        str(x)
        for x in (
            r.scenario,
            r.size,
            r.target,
            r.round,
            f"{r.rps:.0f}",
            f(r.p50),
            f(r.p99),
            r.bytes_per_resp,
            r.non2xx,
            r.sockerr,
            r.machine_cpu,
            r.server_cpu,
            r.redis_cpu,
            r.wrk_cpu,
            r.other_cpu,
            f(r.us_per_request(r.server_cpu)),
            f(r.us_per_request(r.redis_cpu)),
            "NA" if r.cache_hits is None else r.cache_hits,
            "NA" if r.cache_misses is None else r.cache_misses,
            r.note,
        )
    )


def fmt_range(xs: list[float], digits: int = 0) -> str:
    """median [min..max]."""
    if not xs:
        return "–"
    return f"{bl.median(xs):.{digits}f} [{min(xs):.{digits}f}..{max(xs):.{digits}f}]"


def summary(runs: list[Run], candidate: str, order: list[str]) -> list[str]:
    """The Markdown table of medians and ratios, and the notes under it."""
    lines = [
        "| scenario | size | target | req/s median [min..max] | p50 ms | p99 ms | B/resp | "
        "server CPU µs/req | Redis CPU µs/req | "
        f"{candidate}/target (medians) | paired median [min..max] | runs counted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.scenario, r.size), []).append(r)
    for (sc, size), rs in groups.items():
        targets = [t for t in order if any(r.target == t for r in rs)]
        clean = {t: [r for r in rs if r.target == t and not r.errors and not r.suspect] for t in targets}
        use_suspect = any(not v for v in clean.values())
        counted = {t: [r for r in rs if r.target == t and not r.errors and (use_suspect or not r.suspect)] for t in targets}
        if use_suspect:
            notes.append(f"{sc} {size}: a target had no clean run, so suspect runs are counted too")
        cand = [r.rps for r in counted.get(candidate, [])]
        # pairs: each counted baseline run against the counted candidate run just before it
        pairs: dict[str, list[float]] = {t: [] for t in targets}
        last: Run | None = None
        for r in rs:
            ok = (not r.errors) and (use_suspect or not r.suspect)
            if r.target == candidate:
                last = r if ok else None
            elif ok and last is not None and r.rps > 0 and last.rps > 0:
                pairs[r.target].append(last.rps / r.rps)
        for t in targets:
            c = counted[t]
            xs = [r.rps for r in c]
            p50 = bl.median([r.p50 for r in c if r.p50 is not None])
            p99 = bl.median([r.p99 for r in c if r.p99 is not None])
            bpr = bl.median([r.bytes_per_resp for r in c])
            server_us = bl.median([u for r in c if (u := r.us_per_request(r.server_cpu)) is not None])
            redis_us = bl.median([u for r in c if (u := r.us_per_request(r.redis_cpu)) is not None])
            left = len([r for r in rs if r.target == t]) - len(c)
            if t == candidate or not xs or not cand:
                ratio, paired = "", ""
            else:
                ratio = f"{bl.median(cand) / bl.median(xs):.2f}"
                paired = fmt_range(pairs[t], 2) if pairs[t] else "no clean pair"
            lines.append(
                f"| {sc} | {size} | {t} | {fmt_range(xs)} | "
                f"{'–' if p50 is None else f'{p50:.2f}'} | {'–' if p99 is None else f'{p99:.2f}'} | "
                f"{'–' if bpr is None else f'{bpr:.0f}'} | "
                f"{'–' if server_us is None else f'{server_us:.1f}'} | {'–' if redis_us is None else f'{redis_us:.1f}'} | "
                f"{ratio} | {paired} | "
                f"{len(c)}{f' ({left} left out)' if left else ''} |"
            )
        hits = sum(r.cache_hits or 0 for r in counted.get(candidate, []))
        misses = sum(r.cache_misses or 0 for r in counted.get(candidate, []))
        if hits + misses:
            notes.append(f"{sc} {size}: resultd's cache answered {hits / (hits + misses):.1%} of its reads ({hits} hits, {misses} misses)")
    return lines + [""] + [f"- {n}" for n in notes]


# ---------------------------------------------------------------- main
def main() -> int:
    """Seeds, checks every target, runs the interleaved rounds and prints the report."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--redis-port", type=int, required=True)
    p.add_argument("--redis-pid", type=int, default=0)
    p.add_argument("--resultd", required=True)
    p.add_argument("--resultd-pid", type=int, default=0)
    p.add_argument("--floor", default="")
    p.add_argument("--floor-pid", type=int, default=0)
    p.add_argument("--fastapi", default="")
    p.add_argument("--fastapi-pid", type=int, default=0)
    p.add_argument("--ceiling", default="", help="the kit's HTTP-only ceiling (hot scenarios only)")
    p.add_argument("--ceiling-pid", type=int, default=0)
    p.add_argument("--webdis", default="")
    p.add_argument("--webdis-pid", type=int, default=0)
    p.add_argument("--cold-ids", type=int, default=100_000, help="distinct done results of the cold scenarios")
    p.add_argument("--app", default="bench")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--scenarios", default="hot hot_value cold cold_value running put put_spread")
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pin-gen", default="", help="run wrk under taskset -c CPUS")
    p.add_argument("--suspect-cpu", type=int, default=15, help="flag runs whose 'other' CPU%% exceeds this")
    p.add_argument("--out", default="")
    p.add_argument("--profile-pid", type=int, default=0, help="run each scenario once under `perf record -g -p PID`")
    a = p.parse_args()

    scenarios = [ALIASES.get(s, s) for s in a.scenarios.split()]
    for s in scenarios:
        if s not in SIZES:
            p.error(f"unknown scenario {s!r} (known: {' '.join(ALL_SCENARIOS)})")
    if not (1 <= a.rounds <= 20 and 1 <= a.duration <= 120):
        p.error("rounds must be 1..20 and duration 1..120 s")
    if not 1 <= a.cold_ids <= 1_000_000:
        p.error("--cold-ids must be 1..1000000")
    targets = [Target("resultd", a.resultd.rstrip("/"), a.resultd_pid, "resultd", a.cold_ids)]
    for name, url, pid, kind in (
        ("floor", a.floor, a.floor_pid, "rest"),
        ("ceiling", a.ceiling, a.ceiling_pid, "ceiling"),
        ("webdis", a.webdis, a.webdis_pid, "webdis"),
        ("fastapi", a.fastapi, a.fastapi_pid, "rest"),
    ):
        if url:
            targets.append(Target(name, url.rstrip("/"), pid, kind, a.cold_ids))
    for t in targets:
        if not LOOPBACK_URL.match(t.base):
            p.error(f"{t.name} must be a loopback base URL like http://127.0.0.1:8080, not {t.base!r}")
    if subprocess.run(["sh", "-c", "command -v wrk"], capture_output=True, check=False).returncode:
        print("throughput: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    a.out = a.out or f"bench/out/throughput-{time.strftime('%Y%m%d-%H%M%S')}"
    Path(a.out).mkdir(parents=True, exist_ok=True)

    for n in seed(a.redis_port, a.app, a.cold_ids):
        print(f"# seeded {n}")
    live = []
    for t in targets:
        why = next((w for sc in scenarios if t.serves(sc) for sz in SIZES[sc] if (w := check(t, sc, sz))), None)
        if why is None:
            live.append(t)
        elif t.name == "resultd":
            print(f"throughput: resultd is not ready: {why}", file=sys.stderr)
            return 2
        else:
            print(f"# skip {t.name}: {why}", file=sys.stderr)
    order = [t.name for t in live]
    planned = sum(
        len(SIZES[s]) * a.rounds * max(1, 2 * sum(1 for t in live[1:] if t.serves(s))) * a.duration for s in scenarios
    )
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S')} host={platform.node()} nproc={os.cpu_count()} "
        f"wrk -t{a.threads} -c{a.conns} -d{a.duration}s --latency rounds={a.rounds} "
        f"scenarios={' '.join(scenarios)} targets={' '.join(order)} pin_gen={a.pin_gen or 'none'} "
        f"planned≈{planned // 60}m{planned % 60:02d}s out={a.out}"
    )
    runner = Runner(a, a.redis_pid)
    if a.profile_pid:
        return profile(runner, live[0], scenarios, a)
    runs: list[Run] = []
    print(TSV_HEADER)
    with open(Path(a.out) / "results.tsv", "w") as f:
        f.write(TSV_HEADER + "\n")

        def record(r: Run) -> None:
            runs.append(r)
            f.write(tsv(r) + "\n")
            f.flush()
            print(tsv(r), flush=True)

        cand, baselines = live[0], live[1:]
        for sc in scenarios:
            for size in SIZES[sc]:
                for rnd in range(1, a.rounds + 1):
                    peers = [b for b in baselines if b.serves(sc)]
                    for j, b in enumerate(peers, start=1):
                        record(runner.run(cand, sc, size, f"{rnd}.{j}"))
                        record(runner.run(b, sc, size, str(rnd)))
                    if not peers:
                        record(runner.run(cand, sc, size, str(rnd)))

    table = summary(runs, "resultd", order)
    print()
    print("\n".join(table))
    (Path(a.out) / "summary.md").write_text("\n".join(table) + "\n")
    bad = [r for r in runs if r.errors]
    if bad:
        print(f"\n# {len(bad)} run(s) had errors and were not counted:")
        for r in bad:
            print(f"#   {r.scenario} {r.size} {r.target} round {r.round}: {r.note}")
    print(f"# raw wrk outputs: {a.out}")
    return 3 if bad else 0


def profile(runner: Runner, target: Target, scenarios: list[str], a: argparse.Namespace) -> int:
    """One wrk run per scenario and size while perf samples the server (bench/profile.sh)."""
    for sc in scenarios:
        for size in SIZES[sc]:
            data = Path(a.out) / f"perf-{sc}-{size}.data"
            perf = subprocess.Popen(
                ["perf", "record", "--call-graph", os.environ.get("PROFILE_CALL_GRAPH", "dwarf,32768"), "-F", "499", "-o", str(data), "-p", str(a.profile_pid), "--", "sleep", str(a.duration)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            r = runner.run(target, sc, size, "profile")
            try:
                perf.wait(timeout=a.duration + 30)
            except subprocess.TimeoutExpired:
                perf.kill()
            print(
                f"# {sc} {size}: {r.rps:.0f} req/s, p99 {r.p99} ms, server {r.us_per_request(r.server_cpu) or 0:.1f} µs/req, "
                f"redis {r.us_per_request(r.redis_cpu) or 0:.1f} µs/req, wrk {r.us_per_request(r.wrk_cpu) or 0:.1f} µs/req {r.note}",
                flush=True,
            )
            link = Path(a.out) / "perf.data"
            link.unlink(missing_ok=True)
            link.symlink_to(data.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
