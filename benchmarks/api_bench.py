"""Load benchmark of the HTTP API (issue 3, Performance) against `modelledger serve` on PostgreSQL.

Setup: a fresh PostgreSQL schema, `modelledger serve --workers N` started as a user would, and
an asyncio httpx load generator on the same machine (it competes for the same cores: numbers
are a lower bound). Phases: model registration (setup), batch ingest, single-record ingest with
group commit vs. one transaction per request (the server restarted with
MODELLEDGER_GROUP_COMMIT=false), reads of the model list and detail, a 90-day daily series.

    .venv/bin/python benchmarks/api_bench.py --pg postgresql://postgres@127.0.0.1:5432/postgres \\
        --workers 2 --models 10000 --events 1000000 --clients 64 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import jwt
import psycopg

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

SECRET = secrets.token_urlsafe(48)
ROOT = Path(__file__).resolve().parent.parent


def token(sub: str, scope: str) -> dict[str, str]:
    claims = {"sub": sub, "scope": scope, "exp": datetime.now(UTC) + timedelta(hours=4)}
    return {"Authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}


class Server:
    def __init__(self, args: argparse.Namespace, schema: str, data_dir: Path) -> None:
        self.args, self.schema, self.data_dir = args, schema, data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{args.port}"

    def start(self, *, group_commit: bool = True) -> None:
        env = {**os.environ, "MODELLEDGER_DATABASE_URL": self.args.pg,
               "MODELLEDGER_PG_SCHEMA": self.schema, "MODELLEDGER_JWT_SECRET": SECRET,
               "MODELLEDGER_DATA_DIR": str(self.data_dir), "MODELLEDGER_LOG_LEVEL": "WARNING",
               "MODELLEDGER_GROUP_COMMIT": "true" if group_commit else "false"}
        self.proc = subprocess.Popen(  # noqa: S603 - our own command line
            [str(ROOT / ".venv/bin/modelledger"), "serve", "--workers", str(self.args.workers),
             "--port", str(self.args.port)], env=env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=30)
            self.proc = None


async def load(
    url: str, clients: int, seconds: float, make: Callable[[httpx.AsyncClient, int], Awaitable[int]]
) -> tuple[float, list[float], int]:
    """Run ``clients`` loops for ``seconds``; returns (requests/s, latencies in ms, errors)."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def loop(worker: int) -> None:
            nonlocal errors
            n = 0
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                status = await make(client, worker * 10_000_000 + n)
                latencies.append((time.perf_counter() - start) * 1000)
                errors += status >= 400
                n += 1
        began = time.perf_counter()
        await asyncio.gather(*(loop(i) for i in range(clients)))
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, latencies, errors


def report(name: str, rps: float, latencies: list[float], errors: int, unit: str = "req/s") -> None:
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(f"{name:<44} {rps:>9.0f} {unit:<9} p50 {q[49]:6.1f} ms  p99 {q[98]:6.1f} ms  "
          f"errors {errors}")


def usage(i: int, model_id: str | None = None, when: datetime | None = None) -> dict[str, object]:
    record: dict[str, object] = {
        "request_id": f"r{i}", "response_time_ms": random.uniform(5, 200),
        "input_bytes": 512, "output_bytes": 1024, "success": random.random() > 0.05,
        "occurred_at": (when or datetime.now(UTC)).isoformat(),
    }
    if model_id is not None:
        record["model_id"] = model_id
    return record


async def register_models(url: str, users: list[str], per_user: int) -> dict[str, list[str]]:
    owned: dict[str, list[str]] = {u: [] for u in users}
    queue = [(u, i) for u in users for i in range(per_user)]

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            user, i = queue.pop()
            r = await client.post("/api/models", json={"name": f"model-{i}", "framework": "onnx"},
                                  headers=token(user, "models"))
            r.raise_for_status()
            owned[user].append(r.json()["id"])

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(8)))
    return owned


async def batch_ingest(url: str, models: list[str], events: int) -> float:
    gateway = token("gateway", "usage:write")
    now = datetime.now(UTC)
    batches = [
        [usage(b * 10_000 + i, random.choice(models), now - timedelta(minutes=random.randrange(
            0, 90 * 24 * 60))) for i in range(min(10_000, events - b * 10_000))]
        for b in range((events + 9_999) // 10_000)
    ]
    sent = 0
    began = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while batches:
            records = batches.pop()
            r = await client.post("/api/usage/batch", json={"records": records}, headers=gateway)
            r.raise_for_status()
            sent += r.json()["accepted"]

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(4)))
    return sent / (time.perf_counter() - began)


async def wait_for_projections(url: str) -> None:
    admin = token("ops", "admin")
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while True:
            states = (await client.get("/api/projections", headers=admin)).json()
            if all(s["lag"] == 0 for s in states):
                return
            await asyncio.sleep(1)


async def single_ingest(
    url: str, args: argparse.Namespace, models: list[str]
) -> tuple[float, list[float], int]:
    gateway = token("gateway", "usage:write")
    run = uuid.uuid4().hex[:8]

    async def one(client: httpx.AsyncClient, i: int) -> int:
        model = models[i % len(models)]
        r = await client.post(f"/api/models/{model}/usage", json=usage(i) | {
            "request_id": f"{run}-{i}"}, headers=gateway)
        return r.status_code

    return await load(url, args.clients, args.seconds, one)


async def main(args: argparse.Namespace) -> None:
    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    data_dir = Path(tempfile.mkdtemp(prefix="modelledger-bench-"))
    server = Server(args, schema, data_dir)
    print(f"setup: PostgreSQL schema {schema}, `modelledger serve --workers {args.workers}`, "
          f"{args.clients} asyncio httpx clients on the same {os.cpu_count()}-core machine "
          f"(shared and noisy: figures are indicative)")
    try:
        server.start()
        users = [f"user-{i}" for i in range(max(1, args.models // 100))]
        began = time.perf_counter()
        owned = await register_models(server.url, users, args.models // len(users))
        models = [m for ids in owned.values() for m in ids]
        took = time.perf_counter() - began
        print(f"{'setup: registered models':<44} {len(models):>9} in {took:.0f} s")
        rate = await batch_ingest(server.url, models, args.events)
        print(f"{'batch ingest (10,000 per call, 4 clients)':<44} {rate:>9.0f} events/s")
        await wait_for_projections(server.url)

        rps, lat, err = await single_ingest(server.url, args, models)
        report("single ingest, group commit", rps, lat, err)
        grouped = rps

        user, ids = users[0], owned[users[0]]
        headers = token(user, "models")
        frm = (datetime.now(UTC) - timedelta(days=90)).isoformat()

        async def list_models(client: httpx.AsyncClient, _: int) -> int:
            return (await client.get("/api/models", headers=headers)).status_code

        async def get_model(client: httpx.AsyncClient, i: int) -> int:
            url = f"/api/models/{ids[i % len(ids)]}"
            return (await client.get(url, headers=headers)).status_code

        async def series(client: httpx.AsyncClient, i: int) -> int:
            return (await client.get(f"/api/models/{ids[i % len(ids)]}/usage", headers=headers,
                                     params={"window": "day", "from": frm})).status_code

        for name, make in (("GET /api/models", list_models), ("GET /api/models/{id}", get_model),
                           ("GET usage, 90 daily buckets", series)):
            report(name, *await load(server.url, args.clients, args.seconds, make))

        server.stop()
        server.start(group_commit=False)
        rps, lat, err = await single_ingest(server.url, args, models)
        report("single ingest, one transaction per request", rps, lat, err)
        print(f"{'group commit speed-up':<44} {grouped / rps:>9.1f} x")
    finally:
        server.stop()
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
