"""Pooled PostgreSQL connections are checked before use: after the server ended them (a restart,
an administrator, a network cut), the next read and the next command succeed, without a
restart of the service."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from services.models import Actor

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from services.container import Container

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("backend", ["postgres"],
                                                            indirect=True)]


def _pools(container: Container) -> dict[str, ConnectionPool[Any]]:
    return {
        "registry": container.registry_log.recorder.datastore.pool,  # type: ignore[attr-defined]
        "usage": container.usage_log.recorder.datastore.pool,  # type: ignore[attr-defined]
        "read store": container.store.pool,  # type: ignore[attr-defined]
    }


def _end_pooled_connections(container: Container) -> None:
    """End, on the server, every idle connection of the container's pools (only those: other
    tests share the server) and wait until they are gone."""
    pids = set()
    for pool in _pools(container).values():
        for _ in range(pool.get_stats()["pool_available"]):
            with pool.connection() as conn:  # the idle ones, returned at once
                pids.add(conn.info.backend_pid)
    url = container.settings.postgres_conninfo()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
                      [list(pids)])
        for _ in range(100):
            alive = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                                  [list(pids)]).fetchone()
            if alive is not None and alive[0] == 0:
                return
            time.sleep(0.05)
    raise AssertionError("the backends did not end")


def test_a_read_and_a_command_succeed_after_the_server_ended_the_pooled_connections(
    container: Container,
) -> None:
    owner = uuid.uuid4()
    actor = Actor(owner, "before")
    model_id = container.models.register(actor, name="before")["id"]
    usage_log = container.usage_log.recorder
    usage_log.select_notifications(1, 10)
    _end_pooled_connections(container)

    renamed = container.models.update(actor, model_id, name="after")  # registry, then reads
    registered = container.models.register(actor, name="another")
    # The projector's read of the usage log (the service's own query: the library's retry
    # does not cover it).
    assert list(usage_log.select_notifications(1, 10)) == []

    assert renamed["name"] == "after"
    assert container.models.get(owner, registered["id"])["name"] == "another"
    # Each dead connection was found before it was lent (the library retries its own queries
    # after a failure, 0.2 s later: none was needed).
    returned_broken = {name: pool.get_stats().get("returns_bad", 0)
                       for name, pool in _pools(container).items()}
    assert returned_broken == dict.fromkeys(returned_broken, 0)
