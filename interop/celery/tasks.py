"""The Celery app of the Celery interop scripts and the worker they talk to.

Configured from the environment, so the worker (`python -m celery -A tasks worker ...`) and the
scripts build the same app:

- `CELERY_BROKER_URL`: the broker, the test redis-server with a DB number.
- `CELERY_RESULT_BACKEND`: the result backend (defaults to the broker URL).
- `CELERY_RESULT_COMPRESSION`: optional `result_compression` (e.g. `gzip`).
- `CELERY_GLOBAL_KEYPREFIX`: optional `global_keyprefix` of the result backend's transport options.

A task given a `gate` holds (at most a minute) until the key `gate:{gate}` exists in the result
backend's Redis, so a script can read an intermediate state for as long as it needs.
"""

import os
import time

from celery import Celery

broker = os.environ["CELERY_BROKER_URL"]
backend = os.environ.get("CELERY_RESULT_BACKEND") or broker
compression = os.environ.get("CELERY_RESULT_COMPRESSION") or None
keyprefix = os.environ.get("CELERY_GLOBAL_KEYPREFIX") or None

GATE_LIMIT = 60.0

app = Celery("tasks", broker=broker, backend=backend)
app.conf.update(
    result_extended=True,
    task_track_started=True,
    result_compression=compression,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
if keyprefix:
    app.conf.result_backend_transport_options = {"global_keyprefix": keyprefix}


def open_gate(name: str) -> None:
    """Lets a task waiting on `name` go on."""
    app.backend.client.set(f"gate:{name}", b"1", ex=600)


def _hold(gate) -> None:
    if not gate:
        return
    deadline = time.monotonic() + GATE_LIMIT
    while not app.backend.client.exists(f"gate:{gate}") and time.monotonic() < deadline:
        time.sleep(0.01)


@app.task
def add(x, y):
    """x + y."""
    return x + y


@app.task
def fail(x):
    """Raises ZeroDivisionError."""
    return x / 0


@app.task(bind=True)
def progress(self, steps, gate=None):
    """Stores a custom PROGRESS state with its meta, holds at `gate`, then returns `steps`."""
    self.update_state(state="PROGRESS", meta={"done": 1, "total": steps})
    _hold(gate)
    return steps


# Not tracked as STARTED, so the RETRY record stays until the second run returns.
@app.task(bind=True, max_retries=3, track_started=False)
def retry_once(self, value, gate=None):
    """Retries its first run (countdown 0); the second run holds at `gate` and returns `value`."""
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("first run"), countdown=0)
    _hold(gate)
    return value


@app.task
def sleepy(sec, gate=None):
    """Holds at `gate` (STARTED meanwhile), sleeps `sec` s and returns the time its work ended."""
    _hold(gate)
    time.sleep(sec)
    return time.time()


@app.task
def tsum(values):
    """The sum of a chord header's results."""
    return sum(values)
