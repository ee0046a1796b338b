"""Metered records, child processes that are SIGKILLed with a spool open, and a stoppable cluster.

Run as ``python -m tests.services.spool_helpers <program> ...`` by the tests: ``hold`` keeps
a spool with records open, ``append`` appends and prints ``acked <i>`` after each await,
``meter`` runs a ``Meter`` over a real container and prints ``acked <request id>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import msgspec
import psycopg
from psycopg.sql import SQL, Identifier

from config.settings import load_settings
from eventstore.ports import RETIRED_MARK, SHIPMENTS_TABLE
from modelledger.bootstrap import build
from services.container import Container
from services.metering import Meter, Shipping
from services.usage import MeteredUsage
from serving.spool import Spool
from tests.faults.processes import ROOT, ThrowawayPostgres
from tests.helpers import stored_usage

MODULE = "tests.services.spool_helpers"


def metered(model_id: uuid.UUID, owner_id: uuid.UUID, request_id: str,
            **changes: Any) -> MeteredUsage:
    record = MeteredUsage(
        model_id=model_id, owner_id=owner_id, request_id=request_id,
        occurred_at=datetime.now(UTC), response_time_ms=1.25, input_bytes=120, output_bytes=64,
        success=True, status_code=200, error=None, user_agent="tritonclient", ip="127.0.0.1",
        rejected=False, api_key_id="key-1", caller="alice",
    )
    return msgspec.structs.replace(record, **changes)


def shipment_marks(container: Container) -> dict[str, int]:
    """Each spool's shipment mark in the usage log, read straight from its table."""
    settings = container.settings
    if settings.backend == "sqlite":
        with contextlib.closing(sqlite3.connect(settings.sqlite_file("usage"))) as conn:
            return dict(conn.execute(f"SELECT spool, through FROM {SHIPMENTS_TABLE}").fetchall())
    with psycopg.connect(settings.postgres_conninfo()) as pg:
        query = SQL("SELECT spool, through FROM {}.{}").format(
            Identifier(settings.pg_schema), Identifier(SHIPMENTS_TABLE))
        return {spool: int(through) for spool, through in pg.execute(query)}


@contextlib.contextmanager
def usage_writes_blocked(container: Container) -> Iterator[None]:
    """Hold the usage log's write lock from another connection: every insert waits."""
    settings = container.settings
    if settings.backend == "sqlite":
        conn = sqlite3.connect(settings.sqlite_file("usage"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with psycopg.connect(settings.postgres_conninfo()) as pg:
        # The lock the usage recorder takes for every insert.
        pg.execute(SQL("LOCK TABLE {}.usageledger_events IN EXCLUSIVE MODE")
                   .format(Identifier(settings.pg_schema)))
        try:
            yield
        finally:
            pg.rollback()


def live_shipment_marks(container: Container) -> set[str]:
    """The spools whose mark is not retired (``RETIRED_MARK``: the spool's file was removed)."""
    return {spool for spool, through in shipment_marks(container).items()
            if through < RETIRED_MARK}


def stored_request_ids(container: Container) -> Counter[str]:
    """How often each request id is in the usage log (every stored usage event, read back)."""
    return Counter(event.request_id for event in stored_usage(container))


class Child:
    """A child process speaking a line protocol on stdout (stderr merged in)."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", MODULE, *args], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._arrived: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._arrived.put(line)
        self._arrived.put(None)

    def expect(self, prefix: str, count: int = 1, timeout: float = 60) -> None:
        """Wait until ``count`` lines starting with ``prefix`` arrived."""
        deadline = time.monotonic() + timeout
        while sum(line.startswith(prefix) for line in self.lines) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} x {prefix!r} in time: {self.lines[-20:]}")
            with contextlib.suppress(queue.Empty):
                if self._arrived.get(timeout=0.1) is None:
                    raise AssertionError(f"child ended early: {self.lines[-20:]}")

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def kill(self) -> list[str]:
        """SIGKILL; every line it wrote before it died."""
        self.process.kill()
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)
        return self.lines

    def acked(self) -> set[str]:
        return {line.split(" ", 1)[1] for line in self.lines if line.startswith("acked ")}


def stop_postgres(cluster: ThrowawayPostgres) -> None:
    cluster.stop()


def start_postgres(cluster: ThrowawayPostgres) -> None:
    cluster.start_again()


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _hold(directory: str, records: str) -> None:
    spool = Spool.open(Path(directory))
    for i in range(int(records)):
        await spool.append(f"held-{i}".encode())
    _say(f"ready {spool.path}")
    await asyncio.Event().wait()  # until killed


async def _append(directory: str, count: str, concurrency: str) -> None:
    spool = Spool.open(Path(directory))
    numbers = iter(range(int(count)))

    async def appender() -> None:
        for i in numbers:
            await spool.append(f"record-{i}".encode())
            _say(f"acked {i}")

    _say("ready")
    await asyncio.gather(*(appender() for _ in range(int(concurrency))))
    await asyncio.Event().wait()


async def _meter(*arguments: str) -> None:
    data_dir, database_url, schema, model, owner, count, *shipping = arguments
    overrides: dict[str, object] = {"data_dir": Path(data_dir)}
    if database_url:
        overrides |= {"database_url": database_url, "pg_schema": schema, "pg_pool_size": 2}
    container = build(load_settings({}, **overrides))
    meter = Meter(Path(data_dir) / "spool", container.usage,
                  shipping=cast("Shipping", shipping[0] if shipping else "own"))
    meter.start()
    _say("ready")
    await asyncio.to_thread(sys.stdin.readline)  # "go": the test has blocked the event store
    numbers = iter(range(int(count)))

    async def caller() -> None:
        for i in numbers:
            # Every other call as if its request id were generated: both ways are shipped.
            await meter.record(metered(uuid.UUID(model), uuid.UUID(owner), f"req-{i}",
                                       generated_id=i % 2 == 0))
            _say(f"acked req-{i}")

    await asyncio.gather(*(caller() for _ in range(8)))
    await asyncio.Event().wait()


if __name__ == "__main__":
    PROGRAMS: dict[str, Callable[..., Coroutine[Any, Any, None]]] = {
        "hold": _hold, "append": _append, "meter": _meter,
    }
    program, *arguments = sys.argv[1:]
    asyncio.run(PROGRAMS[program](*arguments))
