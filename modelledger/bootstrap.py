"""The composition root: settings in, every wired service out. Tests build the same root."""

from __future__ import annotations

import contextlib
import gc
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsourcing.utils import get_topic

from domain.upstream import UpstreamHosts
from eventstore.applications import RegistryLog, UsageLog
from eventstore.postgres import PostgresUsageRecorder
from eventstore.sqlite import SQLiteUsageRecorder
from projections.locks import Namespace, session_lock
from projections.projector import EventSource, Projector
from projections.store.postgres import PostgresStore
from projections.store.sqlite import SQLiteStore
from projections.worker import Wakeups
from services.artifacts import ArtifactStore
from services.container import Container
from services.keys import ApiKeyService
from services.models import ModelService
from services.usage import UsageService

if TYPE_CHECKING:
    from collections.abc import Iterator

    from config.settings import Settings
    from projections.store.base import ReadStore


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
            # Check a pooled connection before lending it (psycopg_pool's check_connection):
            # after a PostgreSQL restart the pool replaces its dead connections instead of
            # failing one request per connection it holds.
            "POSTGRES_PRE_PING": "y",
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
    with session_lock(settings.postgres_conninfo(), Namespace.DDL, settings.pg_schema, "ddl"):
        yield


def build_store(settings: Settings) -> ReadStore:
    if settings.backend == "sqlite":
        return SQLiteStore(settings.sqlite_file("projections"))
    return PostgresStore(
        settings.postgres_conninfo(), schema=settings.pg_schema, pool_size=settings.pg_pool_size
    )


def tune_gc() -> None:
    """Collect young objects every 100,000 allocations instead of 700: batches allocate
    tens of thousands that live for the whole batch, which the default re-scans over and over."""
    gc.set_threshold(100_000, 50, 100)


def build(settings: Settings) -> Container:
    """Wire the whole service for ``settings``."""
    tune_gc()
    upstream_hosts = UpstreamHosts.parse(settings.upstream_hosts)  # a bad entry: before any I/O
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    with schema_lock(settings):
        registry_log = RegistryLog(env=eventsourcing_env(settings, "registry"))
        usage_log = UsageLog(env=eventsourcing_env(settings, "usage"))
        store = build_store(settings)
        store.setup()
    projector = Projector(
        store,
        {
            "registry": EventSource("registry", registry_log.recorder, registry_log.mapper),
            "usage": EventSource("usage", usage_log.recorder, usage_log.mapper),
        },
        batch_size=settings.projection_batch_size,
    )
    wakeups = Wakeups(["registry", "usage"])
    artifacts = ArtifactStore(Path(settings.data_dir) / "artifacts", settings.max_upload_bytes)
    return Container(
        settings=settings,
        registry_log=registry_log,
        usage_log=usage_log,
        store=store,
        projector=projector,
        artifacts=artifacts,
        models=ModelService(
            registry_log, projector, store, artifacts, base_url=settings.base_url,
            upstream_hosts=upstream_hosts,
        ),
        usage=UsageService(usage_log, store, on_recorded=lambda: wakeups.notify("usage")),
        wakeups=wakeups,
        keys=ApiKeyService(registry_log, projector, store),
    )
