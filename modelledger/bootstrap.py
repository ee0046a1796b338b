"""The composition root: settings in, every wired service out. Tests build the same root."""

from __future__ import annotations

import contextlib
import gc
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from eventsourcing.utils import get_topic

from modelledger.ingest import UsageIngest
from modelledger.recorders import PostgresUsageRecorder, SQLiteUsageRecorder
from modelledger.registry import ModelRegistry
from modelledger.services import ModelService
from modelledger.usage_ledger import UsageLedger
from projections.postgres_store import LOCK_NAMESPACE, PostgresStore, lock_key
from projections.projector import EventSource, Projector
from projections.sqlite_store import SQLiteStore
from projections.worker import Leadership, Wakeups, Worker, listen

if TYPE_CHECKING:
    from collections.abc import Iterator

    from modelledger.settings import Settings
    from projections.store import ReadStore


@dataclass
class Container:
    """Everything a process needs, built once from settings."""

    settings: Settings
    registry: ModelRegistry
    usage_ledger: UsageLedger
    store: ReadStore
    projector: Projector
    models: ModelService
    ingest: UsageIngest
    wakeups: Wakeups

    def start_worker(self, stop: threading.Event) -> list[threading.Thread]:
        """Run the projection worker (and, on PostgreSQL, its LISTEN thread) until ``stop``."""
        conninfo = None if self.settings.backend == "sqlite" else self.settings.postgres_conninfo()
        worker = Worker(
            self.projector,
            Leadership(
                conninfo=conninfo,
                lock_dir=self.settings.data_dir / "locks",
                scope=self.settings.pg_schema,
            ),
            self.wakeups,
            poll_interval=self.settings.poll_interval,
            linger=self.settings.projection_linger,
        )
        threads = worker.start(stop)
        if conninfo is not None:
            channels = {
                self.registry.recorder.channel_name: "registry",  # type: ignore[attr-defined]
                self.usage_ledger.recorder.channel_name: "usage",  # type: ignore[attr-defined]
            }
            listener = threading.Thread(
                target=listen, args=(conninfo, channels, self.wakeups, stop),
                name="projection-listen", daemon=True,
            )
            listener.start()
            threads.append(listener)
        return threads

    def close(self) -> None:
        self.store.close()
        self.registry.close()
        self.usage_ledger.close()


def eventsourcing_env(settings: Settings, role: str) -> dict[str, str]:
    """The ``eventsourcing`` library's configuration for one of the two event logs."""
    env: dict[str, Any] = {"CREATE_TABLE": "y"}
    if settings.backend == "sqlite":
        path = settings.sqlite_file(role)
        path.parent.mkdir(parents=True, exist_ok=True)
        env |= {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path),
                "SQLITE_LOCK_TIMEOUT": "60"}
        if role == "usage":
            env["APPLICATION_RECORDER_TOPIC"] = get_topic(SQLiteUsageRecorder)
    else:
        params = settings.postgres_params()
        env |= {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": params["dbname"],
            "POSTGRES_HOST": params["host"],
            "POSTGRES_PORT": params["port"],
            "POSTGRES_USER": params["user"],
            "POSTGRES_PASSWORD": params["password"],
            "POSTGRES_SCHEMA": settings.pg_schema,
            # One connection kept open, more opened on demand up to pg_pool_size: several
            # processes x three pools must fit PostgreSQL's max_connections.
            "POSTGRES_POOL_SIZE": "1",
            "POSTGRES_MAX_OVERFLOW": str(max(0, settings.pg_pool_size - 1)),
            # Off on purpose: in 9.5.6 it skips the table lock and tracking rows.
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        }
        if role == "usage":
            env["APPLICATION_RECORDER_TOPIC"] = get_topic(PostgresUsageRecorder)
    return env


@contextlib.contextmanager
def schema_lock(settings: Settings) -> Iterator[None]:
    """Serialise start-up DDL across processes on PostgreSQL.

    The library runs ``CREATE TABLE IF NOT EXISTS`` and ``CREATE OR REPLACE FUNCTION`` at every
    start; two processes doing it at once fail with "tuple concurrently updated".
    """
    if settings.backend != "postgres":
        yield
        return
    with psycopg.connect(settings.postgres_conninfo(), autocommit=True) as conn:
        key = (LOCK_NAMESPACE, lock_key(settings.pg_schema, "ddl"))
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", key)
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)


def build_store(settings: Settings) -> ReadStore:
    if settings.backend == "sqlite":
        return SQLiteStore(settings.sqlite_file("projections"))
    return PostgresStore(
        settings.postgres_conninfo(), schema=settings.pg_schema, pool_size=settings.pg_pool_size
    )


def tune_gc() -> None:
    """Collect young objects every 100,000 allocations instead of 700.

    Projection batches and ingest batches allocate tens of thousands of objects that live for
    the whole batch; with the default threshold the collector re-scans them over and over
    (measured: decoding a usage event took 7.9 us with the default, 2.3 us with this).
    """
    gc.set_threshold(100_000, 50, 100)


def build(settings: Settings) -> Container:
    """Wire the whole service for ``settings``."""
    tune_gc()
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    with schema_lock(settings):
        registry = ModelRegistry(env=eventsourcing_env(settings, "registry"))
        usage_ledger = UsageLedger(env=eventsourcing_env(settings, "usage"))
        store = build_store(settings)
        store.setup()
    projector = Projector(
        store,
        {
            "registry": EventSource("registry", registry.recorder, registry.mapper),
            "usage": EventSource("usage", usage_ledger.recorder, usage_ledger.mapper),
        },
        batch_size=settings.projection_batch_size,
    )
    wakeups = Wakeups(["registry", "usage"])
    return Container(
        settings=settings,
        registry=registry,
        usage_ledger=usage_ledger,
        store=store,
        projector=projector,
        models=ModelService(registry, projector, store, settings),
        ingest=UsageIngest(usage_ledger, store, on_recorded=lambda: wakeups.notify("usage")),
        wakeups=wakeups,
    )
