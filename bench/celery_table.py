"""Prints the table of a wake_latency.py report (its last line on stdin); exits 1 if a check failed."""

import json
import sys

report = json.loads(sys.stdin.read().strip().splitlines()[-1])
m = report["measurements"]
print(f"wake latency after the task ends: {m.get('tasks')} sleepy(0.05) tasks, both waiters on every task at once")
print(f"{'waiter':<26}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
for name, key in (("HTTP long poll (resultd)", "http_long_poll"), ("AsyncResult.get()", "celery_get")):
    s = m.get(key) or {}
    print(f"{name:<26}{s.get('n', 0):>6}{s.get('p50_ms')!s:>10}{s.get('p99_ms')!s:>10}{s.get('max_ms')!s:>10}")
print(f"resultd_celery_channels after the run: {m.get('channels_after')}")
print(f"checks: {report['passed']} passed, {report['failed']} failed")
for f in report["failures"]:
    print(f"  FAILED {f['name']}: {f['detail'][:300]}")
sys.exit(1 if report["failed"] else 0)
