"""Where no PostgreSQL server is configured, the tests start a throwaway cluster with pg_ctl."""

from __future__ import annotations

import psycopg
import pytest

from tests import pg


@pytest.mark.slow
@pytest.mark.postgres
def test_a_throwaway_cluster_starts_and_accepts_connections() -> None:
    if pg.pg_binaries() is None:
        pytest.skip("no PostgreSQL server binaries (pg_ctl) on this machine")
    url = pg._start_cluster()
    assert url is not None
    assert "127.0.0.1:5432" not in url  # its own port, not the machine's server
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
