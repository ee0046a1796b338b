"""Load benchmark of the HTTP API (issue 3, Performance) against `modelledger serve` on PostgreSQL.

Setup, as the issue states it: a PostgreSQL schema holding 10,000 models (100 owners with 100
each) and 1,000,000 usage events spread over the last 90 days, loaded in-process through the
registry, ``container.usage_log.record`` and ``projector.catch_up_all()`` (not over HTTP);
then ``modelledger serve --workers N`` started as a user would, and wrk (C, Lua scripts for POST
bodies and per-request URLs and tokens) with 64 connections as the load generator. Phases:
first the ceiling of the bare stack (benchmarks/bare_stack.py: a minimal Litestar app under
uvicorn with serve's settings and workers, on ``--ceiling-port``, answering every GET with the
bytes of one real detail response taken from the server; wrk as for the detail, same
connections, threads and seconds); the list, the detail and a 90-day daily series, on the
dataset as loaded, each also reported as a fraction of that ceiling; then batch ingest
(pre-encoded 10,000-record bodies, 4 concurrent httpx clients: the client does almost nothing
per event), single-record ingest with group commit, and last single-record ingest with the
server restarted with ``MODELLEDGER_GROUP_COMMIT=false`` (one transaction per request).

The reads come first because their goals are stated for 10,000 models and 1,000,000 events
stored: after the ingest phases there are a third more, and autovacuum has yet to clear the
rows they updated (measured on 2026-11-26: the series right after them ran at 2,990 and 3,625
req/s, on the settled dataset at 4,413 and 4,489). The ceiling is measured in the same run, on
the same machine state, so that "0.62 of ceiling" says how much of what Litestar and uvicorn
alone can serve the API keeps; the series with fewer clients has no ceiling at its connection
count and is reported in absolute figures only.

    apt-get install wrk
    .venv/bin/python benchmarks/api_bench.py --pg postgresql://postgres@127.0.0.1:5432/postgres \\
        --workers 2 --models 10000 --events 1000000 --connections 64 --seconds 10

``--schema NAME --keep`` keeps the loaded schema for the next run (which then skips loading).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import thread_cpu  # noqa: E402 - this folder's, beside this script

from api.tokens import UsageGrant, issue_token, user_id_of  # noqa: E402
from config.settings import load_settings  # noqa: E402
from domain.model import Model  # noqa: E402
from domain.name_claim import NameClaim  # noqa: E402
from domain.usage import record_usage  # noqa: E402
from modelledger.bootstrap import build  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

SECRET = "benchmark-secret-" + "x" * 48  # a throwaway secret for a local run
USERS = 100
MODEL_IDS = uuid.UUID("2b0d4d50-8a4e-4a9c-9d3a-2f5a0e7c1e11")

# wrk: one line of JSON at the end with throughput, latency percentiles and errors.
LUA_DONE = """
done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read
                 + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "p50": %.3f, "p90": %.3f, "p99": %.3f, '
    .. '"max": %.3f, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3, errors))
end
"""


def bearer(sub: str, scope: str, grant: UsageGrant | None = None) -> str:
    return "Bearer " + issue_token(SECRET, sub, scope.split(), timedelta(hours=6), grant=grant)


ALL_TENANTS = UsageGrant(all_tenants=True)  # the gateway records usage for every user's models


def model_id(user: int, index: int) -> uuid.UUID:
    return uuid.uuid5(MODEL_IDS, f"{user}/{index}")


# Setup ---------------------------------------------------------------------------------------


def load_data(args: argparse.Namespace, schema: str, data_dir: Path) -> float:
    """Register the models and record the usage events in-process; returns the seconds taken."""
    settings = load_settings({}, database_url=args.pg, pg_schema=schema, data_dir=data_dir,
                             jwt_secret=SECRET, pg_pool_size=4)
    began = time.perf_counter()
    c = build(settings)
    try:
        per_user = args.models // USERS
        owners = {}
        batch: list[Model | NameClaim] = []
        for user in range(USERS):
            owner = user_id_of(f"user-{user}")
            for index in range(per_user):
                mid = model_id(user, index)
                owners[mid] = owner
                batch.append(Model.register(
                    model_id=mid, owner_id=owner, name=f"model-{index:03d}", description="",
                    framework="onnx", endpoint_url=f"http://bench/predict/{mid}",
                    actor=str(owner), correlation_id="bench",
                ))
                batch.append(NameClaim.claim(owner, f"model-{index:03d}", mid))
            if len(batch) >= 1_000:
                c.registry_log.save(*batch)
                batch = []
        if batch:
            c.registry_log.save(*batch)
        print(f"  models registered: {len(owners)} ({time.perf_counter() - began:.0f} s)",
              flush=True)
        ids, rng, now = list(owners), random.Random(1), datetime.now(UTC)
        for start in range(0, args.events, 20_000):
            events = []
            for i in range(start, min(args.events, start + 20_000)):
                mid = ids[rng.randrange(len(ids))]
                events.append(record_usage(
                    model_id=mid, owner_id=owners[mid], request_id=f"load-{i}",
                    occurred_at=now - timedelta(seconds=rng.randrange(90 * 86_400)),
                    response_time_ms=rng.uniform(5, 200), input_bytes=512, output_bytes=1024,
                    success=rng.random() > 0.05, now=now,
                ))
            c.usage_log.record(events)
        print(f"  usage recorded: {args.events} ({time.perf_counter() - began:.0f} s)", flush=True)
        c.projector.catch_up_all()
        print(f"  projections caught up ({time.perf_counter() - began:.0f} s)", flush=True)
    finally:
        c.close()
    return time.perf_counter() - began


# Server --------------------------------------------------------------------------------------


class Server:
    def __init__(self, args: argparse.Namespace, schema: str, data_dir: Path) -> None:
        self.args, self.schema, self.data_dir = args, schema, data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{args.port}"

    def start(self, *, group_commit: bool = True) -> None:
        # Another server on the port would answer the readiness check and be measured instead.
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", self.args.port)) == 0:
                raise RuntimeError(f"port {self.args.port} is in use: stop that server first")
        env = {**os.environ, "MODELLEDGER_DATABASE_URL": self.args.pg,
               "MODELLEDGER_PG_SCHEMA": self.schema, "MODELLEDGER_JWT_SECRET": SECRET,
               "MODELLEDGER_DATA_DIR": str(self.data_dir), "MODELLEDGER_LOG_LEVEL": "WARNING",
               "MODELLEDGER_GROUP_COMMIT": "true" if group_commit else "false",
               # Each process opens 2 x this for the event logs at start: PostgreSQL's 100
               # connections are shared with whatever else runs on the machine.
               "MODELLEDGER_PG_POOL_SIZE": str(self.args.pool_size),
               # 100 users at ~5,000 req/s is ~3,000 a minute each: the default limit.
               "MODELLEDGER_RATE_LIMIT_PER_MINUTE": "0",
               "MODELLEDGER_RATE_LIMIT_INGEST_PER_MINUTE": "0"}
        root = Path(self.args.server_root or ROOT)
        if self.args.server_root:  # another checkout of the code, e.g. `git archive` of a commit
            env["PYTHONPATH"] = str(root)
        log = (self.data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our own command line
            [str(ROOT / ".venv/bin/modelledger"), "serve", "--workers", str(self.args.workers),
             "--port", str(self.args.port)], env=env, cwd=root,
            stdout=log, stderr=log, start_new_session=True,
        )
        wait_ready(self.proc, self.data_dir / "server.log", 90,
                   lambda: httpx.get(self.url + "/health/live", timeout=2).status_code == 200)

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.proc = None


def wait_ready(
    proc: subprocess.Popen[Any], log: Path, seconds: float, ready: Callable[[], bool]
) -> None:
    """Wait until ``ready()`` holds, failing when ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited; see {log}")
        try:
            if ready():
                time.sleep(1)  # let every worker finish starting
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{proc.args!r} did not become ready; see {log}")


def stop_process_group(proc: subprocess.Popen[Any] | None) -> None:
    """SIGINT to the server's process group (its workers too), SIGKILL after 30 s."""
    if proc is None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class BareStack:
    """benchmarks/bare_stack.py with ``modelledger serve``'s uvicorn settings and workers."""

    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        self.args, self.data_dir = args, data_dir
        self.port = args.ceiling_port or args.port + 1
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, body: bytes) -> None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                raise RuntimeError(f"port {self.port} is in use: stop that server first")
        body_file = self.data_dir / "bare-stack-body.json"
        body_file.write_bytes(body)
        log = (self.data_dir / "bare-stack.log").open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our own command line
            [str(ROOT / ".venv/bin/python"), str(Path(__file__).with_name("bare_stack.py")),
             "--body", str(body_file), "--workers", str(self.args.workers), "--port",
             str(self.port), "--log-level", "warning"],  # the server's MODELLEDGER_LOG_LEVEL
            stdout=log, stderr=log, start_new_session=True,
        )
        wait_ready(self.proc, self.data_dir / "bare-stack.log", 60,
                   lambda: httpx.get(self.url + "/", timeout=2).content == body)

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.proc = None


# Load ----------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    rps: float
    p50: float
    p90: float
    p99: float
    errors: int
    requests: int
    cpu_us: float = 0.0  # server CPU (all its processes) per request
    of_ceiling: float | None = None  # req/s over the bare stack's, same connections


def lua_list(values: list[str]) -> str:
    return "{" + ", ".join(json.dumps(v) for v in values) + "}"


def wrk(
    args: argparse.Namespace, url: str, name: str, script: str, connections: int | None = None
) -> Result:
    """Run wrk with ``script`` (which defines ``request``) and parse its summary."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + LUA_DONE)
    try:
        out = subprocess.run(  # noqa: S603 - our own command line
            [args.wrk, "-t", str(args.threads), "-c", str(connections or args.connections), "-d",
             f"{args.seconds}s", "--timeout", "10s", "-s", handle.name, url],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        Path(handle.name).unlink()
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    return Result(name, r["requests"] / r["seconds"], r["p50"], r["p90"], r["p99"], r["errors"],
                  r["requests"])


def read_script(paths: list[str], tokens: list[str]) -> str:
    """GET ``paths[i]`` with ``tokens[i]``, round robin, a different start per connection."""
    return f"""
local paths = {lua_list(paths)}
local tokens = {lua_list(tokens)}
local n = 0
setup = function(thread) thread:set("seed", math.random(1, 1000000)) end
init = function() n = seed end
request = function()
  n = n + 1
  local i = n % #paths + 1
  return wrk.format("GET", paths[i], {{["Authorization"] = tokens[i]}})
end
"""


def ingest_script(model_ids: list[str], token: str, run: str) -> str:
    """POST one usage record with a fresh request id to a model, round robin."""
    return f"""
local models = {lua_list(model_ids)}
local counter = 0
local stamp = tostring(os.time())  -- fresh request ids on every run
local threads = 0
-- ``tid`` must stay a global: thread:set writes the thread's globals, not a local of the chunk.
setup = function(thread) threads = threads + 1; thread:set("tid", threads) end
request = function()
  counter = counter + 1
  local body = '{{"request_id": "{run}-' .. stamp .. '-' .. tid .. '-' .. counter .. '", '
    .. '"response_time_ms": 12.5, "input_bytes": 512, "output_bytes": 1024, "success": true}}'
  return wrk.format("POST", "/api/models/" .. models[counter % #models + 1] .. "/usage",
    {{["Authorization"] = {json.dumps(token)}, ["Content-Type"] = "application/json"}}, body)
end
"""


async def batch_ingest(url: str, model_ids: list[str], events: int) -> float:
    """Pre-encoded 10,000-record bodies posted by 4 concurrent clients; returns events/s."""
    gateway = {"Authorization": bearer("gateway", "usage:write", ALL_TENANTS),
               "Content-Type": "application/json"}
    run, now, rng = uuid.uuid4().hex[:8], datetime.now(UTC), random.Random(2)
    bodies = [
        msgspec.json.encode({"records": [
            {"model_id": rng.choice(model_ids), "request_id": f"{run}-{b}-{i}",
             "occurred_at": (now - timedelta(seconds=rng.randrange(86_400))).isoformat(),
             "response_time_ms": rng.uniform(5, 200), "input_bytes": 512, "output_bytes": 1024,
             "success": rng.random() > 0.05}
            for i in range(min(10_000, events - b * 10_000))
        ]})
        for b in range((events + 9_999) // 10_000)
    ]
    accepted = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while bodies:
            r = await client.post("/api/usage/batch", content=bodies.pop(), headers=gateway)
            r.raise_for_status()
            accepted += r.json()["accepted"]

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(4)))
    return accepted / (time.perf_counter() - began)


def wait_for_projections(url: str) -> None:
    admin = {"Authorization": bearer("ops", "admin")}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        states = httpx.get(url + "/api/projections", headers=admin, timeout=30).json()
        if all(s["lag"] == 0 for s in states):
            return
        time.sleep(1)


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and all its descendants (Linux /proc), in seconds."""
    return thread_cpu.tree_cpu_seconds(pid)


def settle(pg: str, schema: str) -> None:
    """Start from a steady state: vacuum and analyse what loading (or a previous run) wrote,
    write it out, and wait for the machine to go quiet, so that autovacuum and checkpoints
    triggered by the bulk load do not land in the first phases."""
    began = time.monotonic()
    with psycopg.connect(pg, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
        ).fetchall()
        for (table,) in tables:
            conn.execute(f'VACUUM (ANALYZE) "{schema}"."{table}"')
        conn.execute("CHECKPOINT")
    while os.getloadavg()[0] > 1.0 and time.monotonic() - began < 120:
        time.sleep(2)
    print(f"  vacuumed, checkpointed, settled ({time.monotonic() - began:.0f} s, load "
          f"{load_average()})", flush=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


GOALS = {  # issue 3, Performance: (minimum req/s, maximum p99 ms)
    "single ingest, group commit": (3_000, None),
    "GET /api/models": (3_000, 25.0),
    "GET /api/models/{id}": (3_000, 25.0),
    "GET usage, 90 daily buckets": (None, 25.0),
}


def summary(
    results: list[Result], batch_rate: float | None, grouped: Result | None, alone: Result | None
) -> None:
    """The table: each phase against the issue's goal (and the reads against the ceiling)."""
    with_ceiling = any(r.of_ceiling is not None for r in results)

    def of(r: Result | None = None) -> str:  # the column, when a ceiling was measured
        if not with_ceiling:
            return ""
        return f" {r.of_ceiling:>10.2f}" if r is not None and r.of_ceiling is not None else " " * 11

    ceiling = f" {'of ceiling':>10}" if with_ceiling else ""
    print(f"\n{'phase':<44} {'req/s':>7}{ceiling} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10}  "
          "goal")
    if batch_rate is not None:
        verdict = "met" if batch_rate >= 30_000 else "NOT met"
        print(f"{'batch ingest (events/s)':<44} {batch_rate:>7.0f}{of()} {'':>7} {'':>7} {'':>10}  "
              f">= 30,000 events/s: {verdict}")
    for r in results:
        rps_goal, p99_goal = GOALS.get(r.name, (None, None))
        checks = []
        if rps_goal is not None:
            checks.append(f">= {rps_goal:,} req/s")
        if p99_goal is not None:
            checks.append(f"p99 <= {p99_goal:.0f} ms")
        met = (rps_goal is None or r.rps >= rps_goal) and (p99_goal is None or r.p99 <= p99_goal)
        goal = f"{', '.join(checks)}: {'met' if met else 'NOT met'}" if checks else ""
        print(f"{r.name:<44} {r.rps:>7.0f}{of(r)} {r.p50:>7.1f} {r.p99:>7.1f} {r.cpu_us:>10.0f}  "
              f"{goal}")
    if grouped is not None and alone is not None:
        ratio = grouped.rps / max(alone.rps, 1e-9)
        print(f"{'group commit / per-request save':<44} {ratio:>6.1f}x{of()} {'':>7} {'':>7} "
              f"{'':>10}  "
              f">= 5x: {'met' if ratio >= 5 else 'NOT met'}")


def main(args: argparse.Namespace) -> None:  # noqa: C901, PLR0912, PLR0915 - the phases, in order
    if shutil.which(args.wrk) is None:
        sys.exit(f"{args.wrk} not found: apt-get install wrk")
    schema = args.schema or f"bench_{secrets.token_hex(4)}"
    data_dir = Path(tempfile.mkdtemp(prefix="modelledger-bench-"))
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        loaded = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".model_view',)
        ).fetchone()
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"
          f", load average {load_average()} before the run")
    print(f"setup: PostgreSQL schema {schema}; {args.models} models of {USERS} owners, "
          f"{args.events} usage events over 90 days; `modelledger serve --workers "
          f"{args.workers}`; wrk -t{args.threads} -c{args.connections} -d{args.seconds}s on the "
          "same machine")
    if loaded and loaded[0]:
        print("  (schema already loaded: reusing it)")
    else:
        took = load_data(args, schema, data_dir)
        print(f"  loaded in {took:.0f} s")
    settle(args.pg, schema)
    server = Server(args, schema, data_dir)
    per_user = args.models // USERS
    users = list(range(USERS))
    tokens = {u: bearer(f"user-{u}", "models") for u in users}
    results: list[Result] = []
    try:
        server.start()
        single_models = [str(model_id(u, i)) for u in users for i in range(per_user)]
        gateway = bearer("gateway", "usage:write", ALL_TENANTS)
        phases = set((args.only or "ceiling,list,detail,series,batch,single,alone").split(","))
        ceiling: Result | None = None

        def run(
            name: str, script: str, connections: int | None = None,
            target: Server | BareStack = server, *, read: bool = False,
        ) -> Result:
            pid = target.proc.pid if target.proc is not None else os.getpid()
            cpu = server_cpu_seconds(pid)
            result = wrk(args, target.url, name, script, connections)
            result.cpu_us = (server_cpu_seconds(pid) - cpu) / max(result.requests, 1) * 1e6
            of = ""
            if read and ceiling is not None and connections is None:  # the ceiling's conditions
                result.of_ceiling = result.rps / max(ceiling.rps, 1e-9)
                of = f" ({result.of_ceiling:.2f} of ceiling)"
            results.append(result)
            print(f"{name:<44} {result.rps:>9.0f} req/s{of}  p50 {result.p50:6.1f} ms  "
                  f"p99 {result.p99:6.1f} ms  errors {result.errors}  server CPU "
                  f"{result.cpu_us:5.0f} us/req  load {load_average()}", flush=True)
            return result

        detail = [(u, str(model_id(u, i))) for u in users for i in range(per_user)]
        random.Random(3).shuffle(detail)
        frm = (datetime.now(UTC) - timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
        detail_reads = read_script(
            [f"/api/models/{m}" for _, m in detail], [tokens[u] for u, _ in detail])
        if "ceiling" in phases:
            # The same requests as the detail phase, answered with one real detail body.
            user, first = detail[0]
            response = httpx.get(f"{server.url}/api/models/{first}",
                                 headers={"Authorization": tokens[user]}, timeout=30)
            response.raise_for_status()
            bare = BareStack(args, data_dir)
            try:
                bare.start(response.content)
                print(f"  bare stack: benchmarks/bare_stack.py on port {bare.port}, "
                      f"{args.workers} worker(s), a {len(response.content)}-byte body "
                      "(GET /api/models/{id})", flush=True)
                ceiling = run("ceiling: bare Litestar + uvicorn", detail_reads, target=bare)
            finally:
                bare.stop()
        if "list" in phases:
            run("GET /api/models",
                read_script(["/api/models"] * USERS, [tokens[u] for u in users]), read=True)
        if "detail" in phases:
            run("GET /api/models/{id}", detail_reads, read=True)
        if "series" in phases:
            series = read_script(
                [f"/api/models/{m}/usage?window=day&from={frm}" for _, m in detail],
                [tokens[u] for u, _ in detail])
            run("GET usage, 90 daily buckets", series, read=True)
            for fewer in args.series_connections:  # context: the same series under less load
                run(f"GET usage, 90 daily buckets, {fewer} clients", series, fewer)
        batch_rate = None
        if "batch" in phases and args.events_over_http:
            rate = batch_rate = asyncio.run(
                batch_ingest(server.url, single_models, args.events_over_http)
            )
            print(f"{'batch ingest (10,000 per call, 4 clients)':<44} {rate:>9.0f} events/s  "
                  f"load {load_average()}", flush=True)
            wait_for_projections(server.url)
        grouped = alone = None
        if "single" in phases:
            grouped = run("single ingest, group commit",
                          ingest_script(single_models, gateway, uuid.uuid4().hex[:8]))
            wait_for_projections(server.url)
        if "alone" in phases:
            server.stop()
            server.start(group_commit=False)
            alone = run("single ingest, one transaction per request",
                        ingest_script(single_models, gateway, uuid.uuid4().hex[:8]))
        if grouped is not None and alone is not None:
            print(f"{'group commit speed-up':<44} {grouped.rps / max(alone.rps, 1e-9):>9.1f} x")
        summary(results, batch_rate, grouped, alone)
    finally:
        server.stop()
        if not args.keep:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"load average after the run: {load_average()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--schema", help="reuse (or create and load) this schema")
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--ceiling-port", type=int,
                        help="port of the bare stack in the ceiling phase (default: --port + 1)")
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--events-over-http", type=int, default=300_000,
                        help="usage events for the batch ingest phase (0 skips it)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--series-connections", default="16",
                        type=lambda v: [int(x) for x in v.split(",") if x],
                        help="also run the series phase with these connection counts "
                        "(comma-separated; empty: none)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--wrk", default="wrk")
    parser.add_argument("--pool-size", type=int, default=4, help="MODELLEDGER_PG_POOL_SIZE")
    parser.add_argument("--server-root", help="serve the code of this directory instead "
                        "(before/after comparisons: `git archive COMMIT | tar -x -C DIR`)")
    parser.add_argument("--only", help="comma-separated phases: ceiling,list,detail,series,"
                        "batch,single,alone (default: all, in this order)")
    main(parser.parse_args())
