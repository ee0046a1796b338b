"""Shared fixtures: every backend-dependent test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import psycopg
import pytest

from config.settings import Settings, load_settings
from modelledger.bootstrap import build
from services.container import Container
from tests.faults.processes import ThrowawayPostgres
from tests.pg import find_postgres

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@cache
def postgres_url() -> str | None:
    return find_postgres()


def require_postgres() -> str:
    url = postgres_url()
    if url is None:
        if os.environ.get("MODELLEDGER_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is required (MODELLEDGER_REQUIRE_POSTGRES) but none was found")
        pytest.skip("no PostgreSQL server reachable and no pg_ctl to start one")
    return url


@pytest.fixture
def postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL cluster of the test's own (initdb + pg_ctl), to stop, start or restart:
    the shared server stays up for the other tests."""
    cluster = ThrowawayPostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """A fresh schema on the test server, dropped afterwards: (url, schema)."""
    url = require_postgres()
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield url, schema
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def make_settings(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, **overrides: object
) -> Settings:
    if backend == "sqlite":
        return load_settings({}, data_dir=tmp_path, **overrides)
    url, schema = request.getfixturevalue("pg_schema")
    return load_settings({}, data_dir=tmp_path, database_url=url, pg_schema=schema,
                         pg_pool_size=4, **overrides)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    return make_settings(backend, tmp_path, request)


@pytest.fixture
def container(settings: Settings) -> Iterator[Container]:
    built = build(settings)
    yield built
    built.close()
