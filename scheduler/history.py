"""The job run history: one row per run (start, end, outcome, summary counts) in the read store."""

from __future__ import annotations

import json
import socket
import uuid
import weakref
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from projections.store.base import ReadStore

_DDL = (
    "CREATE TABLE IF NOT EXISTS job_runs (id TEXT PRIMARY KEY, job TEXT NOT NULL, "
    "started_at TEXT NOT NULL, finished_at TEXT, outcome TEXT NOT NULL, "
    "summary TEXT NOT NULL, host TEXT NOT NULL)"
)
_INDEX = "CREATE INDEX IF NOT EXISTS ix_job_runs_started ON job_runs (started_at)"
_TS = "%Y-%m-%dT%H:%M:%S.%f+00:00"  # fixed width: text order is time order
_ready: weakref.WeakSet[ReadStore] = weakref.WeakSet()  # stores whose table exists


class JobRun(msgspec.Struct, frozen=True):
    """One run of a job; also an item of ``GET /api/admin/jobs``."""

    id: str
    job: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str  # running, ok, error
    summary: dict[str, Any]
    host: str


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TS)


def ensure_table(store: ReadStore) -> None:
    if store in _ready:
        return
    with store.write("job_runs") as cur:
        cur.execute(_DDL)
        cur.execute(_INDEX)
    _ready.add(store)


def started(store: ReadStore, job: str, at: datetime) -> str:
    """Record the start of a run; returns its id."""
    ensure_table(store)
    run_id = uuid.uuid4().hex
    with store.write("job_runs") as cur:
        cur.execute(
            store.sql("INSERT INTO job_runs VALUES (?, ?, ?, NULL, 'running', '{}', ?)"),
            (run_id, job, _text(at), socket.gethostname()),
        )
    return run_id


def finished(
    store: ReadStore, run_id: str, at: datetime, outcome: str, summary: dict[str, Any]
) -> None:
    with store.write("job_runs") as cur:
        cur.execute(
            store.sql("UPDATE job_runs SET finished_at = ?, outcome = ?, summary = ? WHERE id = ?"),
            (_text(at), outcome, json.dumps(summary, default=str, sort_keys=True), run_id),
        )


def recent(store: ReadStore, *, limit: int = 50, job: str | None = None) -> list[JobRun]:
    """The latest runs, newest first."""
    ensure_table(store)
    where, params = ("WHERE job = ? ", [job]) if job else ("", [])
    with store.read() as cur:
        cur.execute(
            store.sql(
                "SELECT id, job, started_at, finished_at, outcome, summary, host FROM job_runs "
                f"{where}ORDER BY started_at DESC LIMIT ?"
            ),
            [*params, limit],
        )
        rows = cur.fetchall()
    return [
        JobRun(
            id=r[0],
            job=r[1],
            started_at=datetime.fromisoformat(r[2]),
            finished_at=datetime.fromisoformat(r[3]) if r[3] else None,
            outcome=r[4],
            summary=json.loads(r[5]),
            host=r[6],
        )
        for r in rows
    ]


def prune(store: ReadStore, *, keep_days: int, now: datetime | None = None) -> int:
    """Delete finished runs started more than ``keep_days`` ago; returns how many."""
    ensure_table(store)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    with store.write("job_runs") as cur:
        cur.execute(
            store.sql("DELETE FROM job_runs WHERE started_at < ? AND outcome <> 'running'"),
            (_text(cutoff),),
        )
        return int(getattr(cur, "rowcount", -1))
