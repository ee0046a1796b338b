"""A key whose statement fails fails only its own request, never the others batched with it;
and the read pool recovers from connections the server dropped."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg_pool import PoolTimeout

from api.app import create_app
from api.read_batching import Coalescer
from api.reads import Reads
from tests.api.conftest import bearer
from tests.helpers import register

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from services.container import Container


class PoisonedSource:
    """A fetch whose statement fails whenever one particular key is among its keys."""

    def __init__(self, poison: str) -> None:
        self.poison = poison
        self.asked: list[list[str]] = []
        self.release = asyncio.Event()

    async def fetch(self, keys: Sequence[str]) -> Mapping[str, str]:
        self.asked.append(list(keys))
        await self.release.wait()
        if self.poison in keys:
            raise ValueError(f"the statement cannot take {self.poison!r}")
        return {key: key.upper() for key in keys}


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_failing_key_fails_alone_and_its_batch_neighbours_are_answered() -> None:
    source = PoisonedSource("bad")
    loader = Coalescer(source.fetch, max_in_flight=1)
    blocker = asyncio.ensure_future(loader.load("first"))
    await settle()
    batched = [asyncio.ensure_future(loader.load(k)) for k in ("a", "bad", "b", "a")]
    await settle()
    source.release.set()
    results = await asyncio.gather(blocker, *batched, return_exceptions=True)
    assert results[0] == "FIRST"
    assert [results[1], results[3], results[4]] == ["A", "B", "A"]
    assert isinstance(results[2], ValueError)
    assert ["a", "bad", "b"] in source.asked  # the shared statement was tried first
    assert ["bad"] in source.asked  # then each key alone


async def test_a_batch_of_one_that_fails_is_not_run_again() -> None:
    source = PoisonedSource("bad")
    source.release.set()
    loader = Coalescer(source.fetch, max_in_flight=1)
    with pytest.raises(ValueError, match="cannot take"):
        await loader.load("bad")
    assert source.asked == [["bad"]]


async def test_a_failure_that_is_no_keys_doing_is_not_run_again_per_key() -> None:
    source = PoisonedSource("bad")
    loader = Coalescer(source.fetch, max_in_flight=1, isolate=lambda _: False)
    blocker = asyncio.ensure_future(loader.load("first"))
    await settle()
    batched = [asyncio.ensure_future(loader.load(k)) for k in ("a", "bad")]
    await settle()
    source.release.set()
    results = await asyncio.gather(blocker, *batched, return_exceptions=True)
    assert all(isinstance(result, ValueError) for result in results[1:])
    assert source.asked == [["first"], ["a", "bad"]]  # the server is gone: no one-by-one retry


@pytest.mark.parametrize(("error", "per_key"), [
    (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), True),
    (psycopg.errors.UndefinedFunction("operator does not exist: text > integer"), True),
    (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), True),
    (psycopg.errors.AdminShutdown("terminating connection"), False),
    (psycopg.OperationalError("server closed the connection unexpectedly"), False),
    (PoolTimeout("couldn't get a connection after 30.00 sec"), False),
])
def test_the_api_reads_ask_keys_alone_unless_the_server_is_out_of_reach(
    error: Exception, per_key: bool,  # noqa: FBT001 - a parameter of the case
) -> None:
    assert Reads.may_come_from_one_key(error) is per_key


def _filters(after: tuple[Any, uuid.UUID] | None = None) -> dict[str, Any]:
    return {"limit": 5, "sort": "name", "descending": False, "after": after, "status": None,
            "name_contains": None, "include_deleted": False}


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_list_key_postgresql_rejects_fails_only_its_own_request(
    container: Container,
) -> None:
    owners = [uuid.uuid4() for _ in range(8)]
    for number, owner in enumerate(owners):
        register(container, owner, f"m{number}")
    reads = Reads(container.store, container.settings)
    await reads.open()
    try:
        # PostgreSQL refuses a NUL in text: the statement carrying this key fails.
        poisoned = _filters(after=("a\x00b", uuid.uuid4()))
        results = await asyncio.gather(
            *(reads.list_models(owner, **(poisoned if number == 4 else _filters()))
              for number, owner in enumerate(owners)),
            return_exceptions=True,
        )
    finally:
        await reads.close()
    assert isinstance(results[4], psycopg.DataError)
    for number, result in enumerate(results):
        if number == 4:
            continue
        assert not isinstance(result, BaseException), result
        rows, total = result
        assert total == 1
        assert [row["name"] for row in rows] == [f"m{number}"]


def _terminate_read_pool(container: Container) -> int:
    """Ends the server side of every connection of the API's read pool in this test schema."""
    schema = container.settings.pg_schema
    with psycopg.connect(container.settings.postgres_conninfo(), autocommit=True) as conn:
        rows = conn.execute(
            # With a timeout, it returns once the backend is gone (as after a restart).
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (f"modelledger-api-read {schema}",),
        ).fetchall()
    return len(rows)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_reads_succeed_again_after_the_server_dropped_the_pools_connections(
    container: Container,
) -> None:
    owner_token = bearer(f"alice-{uuid.uuid4()}")
    with TestClient(create_app(container)) as client:
        created = client.post("/api/models", json={"name": "m"}, headers=owner_token)
        assert created.status_code == 201, created.text
        url = f"/api/models/{created.json()['id']}"
        assert client.get(url, headers=owner_token).status_code == 200
        assert client.get("/api/models", headers=owner_token).status_code == 200
        assert _terminate_read_pool(container) >= 1  # what a PostgreSQL restart does to it
        detail = client.get(url, headers=owner_token)
        listed = client.get("/api/models", headers=owner_token)
    assert detail.status_code == 200, detail.text
    assert listed.status_code == 200, listed.text
    assert listed.json()["total"] == 1
