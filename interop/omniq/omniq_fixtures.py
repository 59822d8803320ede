"""Writes OmniQ records into Redis in OmniQ's exact bytes and prints what it wrote.

OmniQ (legout/omniQ@acdec6d, branch `kilo`) has no release, so this follows its models field by
field (`src/omniq/models/{result,task,event}.py`) with the msgspec it encodes them with, and its
Redis storage's writes (`src/omniq/storage/redis.py`): results `SET`, or `SETEX int(ttl)` when the
result has a ttl; tasks `SET`; events `SET` plus `ZADD {events}:events` scored by the naive UTC
timestamp read as local time (OmniQ's own behaviour). The last stdout line is a JSON list of
`{"task_id", "expect": {...}}` for the Rust test to check over HTTP.

Usage: omniq_fixtures.py --redis redis://127.0.0.1:PORT/DB
"""

import argparse
import enum
import json
import uuid
from datetime import datetime, timedelta
from typing import Any, Optional

import msgspec
import redis


class ResultStatus(str, enum.Enum):
    PENDING = "pending"
    SUCCESS = "success"
    ERROR = "error"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class TaskStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class EventType(str, enum.Enum):
    ENQUEUED = "enqueued"
    DEQUEUED = "dequeued"
    EXECUTING = "executing"
    COMPLETED = "completed"
    FAILED = "failed"


class TaskResult(msgspec.Struct):
    task_id: str
    status: ResultStatus = ResultStatus.PENDING
    result: Any = None
    error: Optional[str] = None
    error_type: Optional[str] = None
    traceback: Optional[str] = None
    created_at: datetime = msgspec.field(default_factory=datetime.utcnow)
    started_at: Optional[datetime] = None
    completed_at: Optional[datetime] = None
    ttl: Optional[timedelta] = None
    expires_at: Optional[datetime] = None
    worker_id: Optional[str] = None
    execution_time: Optional[float] = None
    memory_usage: Optional[int] = None
    metadata: dict = msgspec.field(default_factory=dict)

    def __post_init__(self):
        if self.ttl is not None and self.expires_at is None:
            self.expires_at = self.created_at + self.ttl


class Task(msgspec.Struct):
    func: str
    id: str = msgspec.field(default_factory=lambda: str(uuid.uuid4()))
    args: tuple = ()
    kwargs: dict = msgspec.field(default_factory=dict)
    queue_name: str = "default"
    priority: int = 0
    created_at: datetime = msgspec.field(default_factory=datetime.utcnow)
    run_at: Optional[datetime] = None
    ttl: Optional[timedelta] = None
    expires_at: Optional[datetime] = None
    status: TaskStatus = TaskStatus.PENDING
    retry_count: int = 0
    max_retries: int = 3
    retry_delay: timedelta = timedelta(seconds=1)
    dependencies: list = msgspec.field(default_factory=list)
    callbacks: list = msgspec.field(default_factory=list)
    metadata: dict = msgspec.field(default_factory=dict)


class TaskEvent(msgspec.Struct):
    task_id: str
    event_type: EventType
    id: str = msgspec.field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: datetime = msgspec.field(default_factory=datetime.utcnow)
    message: Optional[str] = None
    details: dict = msgspec.field(default_factory=dict)
    worker_id: Optional[str] = None
    queue_name: Optional[str] = None
    schedule_id: Optional[str] = None
    error_type: Optional[str] = None
    error_message: Optional[str] = None
    traceback: Optional[str] = None
    execution_time: Optional[float] = None
    memory_usage: Optional[int] = None
    metadata: dict = msgspec.field(default_factory=dict)


def encode(obj) -> str:
    return msgspec.json.encode(obj).decode("utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--redis", required=True)
    args = p.parse_args()
    r = redis.Redis.from_url(args.redis, decode_responses=True)
    written = []

    def store_result(res: TaskResult, expect: dict) -> None:
        key = f"omniq:results:result:{res.task_id}"
        if res.ttl:
            r.setex(key, int(res.ttl.total_seconds()), encode(res))
        else:
            r.set(key, encode(res))
        written.append({"task_id": res.task_id, "expect": expect, "stored": r.get(key)})

    def store_task(task: Task) -> None:
        r.set(f"omniq:tasks:task:{task.id}", encode(task))

    def log_event(event: TaskEvent) -> None:
        r.set(f"omniq:events:event:{event.id}", encode(event))
        r.zadd("omniq:events:events", {event.id: event.timestamp.timestamp()})

    created = datetime(2026, 11, 23, 10, 0, 0, 123456)
    ok = TaskResult(
        task_id="report:2026:q4",
        status=ResultStatus.SUCCESS,
        result={"pages": 12, "title": "Zürich 😀"},
        created_at=created,
        started_at=datetime(2026, 11, 23, 10, 0, 0),
        completed_at=datetime(2026, 11, 23, 10, 0, 1, 500000),
        ttl=timedelta(days=1),
        worker_id="worker-001",
        execution_time=1.5,
    )
    store_task(Task(func="reports.render", id="report:2026:q4", args=(2026, 4), status=TaskStatus.COMPLETED))
    store_result(ok, {"status": "success", "state": "SUCCESS", "done": True, "source": "result",
                      "result": {"pages": 12, "title": "Zürich 😀"}, "created_at": "2026-11-23T10:00:00.123456Z",
                      "started_at": "2026-11-23T10:00:00Z", "completed_at": "2026-11-23T10:00:01.500000Z",
                      "result_ttl": 86400.0, "expires_at": "2026-11-24T10:00:00.123456Z", "has_ttl": True})
    for kind in (EventType.ENQUEUED, EventType.DEQUEUED, EventType.EXECUTING, EventType.COMPLETED):
        log_event(TaskEvent(task_id="report:2026:q4", event_type=kind, queue_name="default"))

    try:
        1 / 0
    except ZeroDivisionError as e:
        failed = TaskResult(task_id="div-0", status=ResultStatus.ERROR, error=str(e), error_type=type(e).__name__,
                            traceback="Traceback (most recent call last):\nZeroDivisionError: division by zero\n",
                            created_at=created)
    store_result(failed, {"status": "error", "state": "FAILURE", "done": True, "source": "result",
                          "error": {"type": "ZeroDivisionError", "message": "division by zero",
                                    "traceback": "Traceback (most recent call last):\nZeroDivisionError: division by zero\n"},
                          "has_ttl": False})
    store_result(TaskResult(task_id="cancel-me", status=ResultStatus.CANCELLED, created_at=created),
                 {"status": "cancelled", "state": "REVOKED", "done": True, "source": "result", "has_ttl": False})
    store_task(Task(func="jobs.late", id="too-late", status=TaskStatus.EXPIRED))
    store_result(TaskResult(task_id="too-late", status=ResultStatus.EXPIRED, created_at=created),
                 {"status": "expired", "state": "REVOKED", "done": True, "source": "result", "has_ttl": False})
    store_task(Task(func="jobs.slow", id="still:running", status=TaskStatus.RUNNING, created_at=created))
    written.append({"task_id": "still:running",
                    "expect": {"status": "running", "state": "RUNNING", "done": False, "source": "task", "has_ttl": False},
                    "stored": r.get("omniq:tasks:task:still:running")})
    print(json.dumps(written))


if __name__ == "__main__":
    main()
