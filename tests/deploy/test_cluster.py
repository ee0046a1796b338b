"""The multi-process topology on one machine (scripts/cluster.py), end to end.

Two API replicas, two projection workers (one leads, one stands by) and the scheduler on a
throwaway PostgreSQL: writes through either API are visible through the other; SIGKILLing the
active worker lets the standby take over with nothing lost or counted twice; stopping
everything and starting again loses nothing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.tokens import UsageGrant, issue_token
from projections.locks import Namespace, lock_key

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]
START = datetime.now(UTC) - timedelta(days=1)  # request i occurred at START + i seconds


def _load_cluster() -> Any:
    spec = importlib.util.spec_from_file_location("cluster", ROOT / "scripts" / "cluster.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cluster = _load_cluster()


class Client:
    def __init__(self, state: dict[str, Any]) -> None:
        secret = state["jwt_secret"]
        self.urls: list[str] = state["api_urls"]
        self.user = {"Authorization": f"Bearer {issue_token(secret, 'alice', ['models'])}"}
        gateway = issue_token(secret, "gw", ["usage:write"], grant=UsageGrant(owners=("alice",)))
        self.gateway = {"Authorization": f"Bearer {gateway}"}
        self.admin = {"Authorization": f"Bearer {issue_token(secret, 'ops', ['admin'])}"}
        self.http = httpx.Client(timeout=30)

    def call(self, api: int, method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        response = self.http.request(method, self.urls[api] + path, headers=headers, **kw)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def ingest(self, api: int, model_id: str, request_ids: range) -> dict[str, Any]:
        records = [{"model_id": model_id, "request_id": f"req-{i}", "response_time_ms": 5 + i % 40,
                    "input_bytes": 100, "output_bytes": 10, "success": i % 10 != 0,
                    "occurred_at": (START + timedelta(seconds=i)).isoformat()}
                   for i in request_ids]
        result: dict[str, Any] = self.call(api, "POST", "/api/usage/batch", self.gateway,
                                           json={"records": records})
        assert result["rejected"] == []
        return result

    def wait_caught_up(self, api: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.call(api, "GET", "/api/projections", self.admin)
            if all(s["lag"] == 0 for s in states):
                return
            time.sleep(0.2)
        pytest.fail(f"projections did not catch up: {states}")

    def total_requests(self, api: int, model_id: str) -> int:
        detail = self.call(api, "GET", f"/api/models/{model_id}", self.user)
        return int(detail["usage"]["total_requests"])


def leader_of(database_url: str, projection: str) -> str | None:
    """The application name (``modelledger-worker-N``) of the process leading ``projection``."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s "
            "AND l.objid::bigint = (hashtext(%s)::bigint & 4294967295)",
            (int(Namespace.LEADER), lock_key("public", projection)),  # the cluster's schema
        ).fetchone()
    return None if row is None else str(row[0])


def wait_for_leader(database_url: str, projection: str, other_than: str | None = None) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        leader = leader_of(database_url, projection)
        if leader is not None and leader != other_than:
            return leader
        time.sleep(0.2)
    pytest.fail(f"no worker took over {projection}")


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Any:
    if shutil.which("pg_ctl") is None and not list(Path("/usr/lib/postgresql").glob("*/bin")):
        pytest.skip("no PostgreSQL server binaries (pg_ctl) to start a throwaway cluster")
    root = tmp_path / "cluster"
    yield root
    cluster.destroy(root)


def test_replicas_failover_and_restart_lose_and_double_count_nothing(cluster_dir: Path) -> None:
    state = cluster.start(cluster_dir)
    client = Client(state)

    # Writes through either API are visible through the other, at once.
    model = client.call(0, "POST", "/api/models", client.user,
                        json={"name": "resnet", "framework": "torch"})
    model_id = model["id"]
    assert client.call(1, "GET", f"/api/models/{model_id}", client.user)["name"] == "resnet"
    client.call(1, "PUT", f"/api/models/{model_id}", client.user, json={"name": "resnet-v2"})
    assert client.call(0, "GET", f"/api/models/{model_id}", client.user)["name"] == "resnet-v2"
    listed = client.call(0, "GET", "/api/models", client.user)
    assert [m["name"] for m in listed["items"]] == ["resnet-v2"]

    accepted = 0
    for api, batch in ((0, range(2000)), (1, range(2000, 4000))):
        accepted += client.ingest(api, model_id, batch)["accepted"]
    client.wait_caught_up(1)
    assert client.total_requests(0, model_id) == accepted == 4000

    # SIGKILL the worker leading the usage projection, while usage keeps arriving.
    leader = wait_for_leader(state["database_url"], "usage")
    name = leader.removeprefix("modelledger-")
    os.kill(state["processes"][name], signal.SIGKILL)
    for api, batch in ((1, range(4000, 6000)), (0, range(6000, 8000))):
        accepted += client.ingest(api, model_id, batch)["accepted"]
    retry = client.ingest(1, model_id, range(5000, 7000))  # a retried batch: all duplicates
    assert (retry["accepted"], retry["duplicates"]) == (0, 2000)
    standby = wait_for_leader(state["database_url"], "usage", other_than=leader)
    assert standby.startswith("modelledger-worker-")
    client.wait_caught_up(0)
    assert accepted == 8000
    assert client.total_requests(0, model_id) == client.total_requests(1, model_id) == 8000

    # Stop everything, start again on the same data: nothing lost, nothing recounted.
    cluster.stop(cluster_dir)
    state = cluster.start(cluster_dir)
    client = Client(state)
    client.wait_caught_up(1)
    assert client.total_requests(1, model_id) == 8000
    again = client.ingest(0, model_id, range(2000))
    assert (again["accepted"], again["duplicates"]) == (0, 2000)
    client.wait_caught_up(0)
    assert client.total_requests(0, model_id) == 8000
    assert client.call(1, "GET", f"/api/models/{model_id}", client.user)["version"] == 2
    assert uuid.UUID(model_id)
