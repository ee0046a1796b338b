"""Soak test: minutes of mixed traffic against `modelledger serve` on PostgreSQL.

    python scripts/soak.py [--minutes 20] [--pg URL] [--workers 2] [--rate 300]

Creates a schema of its own on the server given by --pg (dropped afterwards unless --keep),
starts `modelledger serve --workers N` on it and sends, at a steady rate, reads (model list,
model detail, 90-day daily series with a varying start), single and batch usage ingest and
model commands (register and delete, rename, deactivate/reactivate). Before the traffic it backfills
--backfill usage events of the past 90 days (recorded then: the series have history) and
compacts them, as old usage is in a deployment. Every --compact-every minutes it runs
`modelledger compact --older-than 0h`, so that each run compacts the traffic since the one
before while the traffic goes on (with the 30-day retention nothing a soak sends would ever
qualify); the embedded scheduler runs its own compaction job too. Every minute it prints the
request rate, errors, read and ingest latency (as the client sees it), the projections' lag,
the load generator's own CPU and how late its loop woke (when these are high, the generator,
not the server, limits the numbers) and each server process's RSS (VmRSS from /proc). At the
end it waits for the projections to catch up and checks that the usage counted equals the
usage acknowledged.

Verdict (exit status 0 when all hold): RSS of every server process after the warm-up minute
grows by at most 10 %; the read p99 of every minute stays within 1.5x of the first minute's;
the usage counted equals the usage acknowledged (API acknowledgements plus the backfill).
"""

# A standalone script: it runs only the binaries it names, prints its table, reads the database
# directly (psycopg) and draws its traffic from a seeded generator (not for secrets).
# ruff: noqa: INP001, S603, T201, TID251, S311, PLR2004
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
from psycopg import sql

from api.tokens import SCOPE_ADMIN, SCOPE_MODELS, SCOPE_USAGE_WRITE, UsageGrant, issue_token

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "modelledger"]
CONCURRENCY = 64  # requests in flight at most; beyond, a due request waits for a slot
BACKLOG = 512  # due requests waiting for a slot at most; beyond, they are dropped (reported)
ATTEMPTS = 8  # an ingest request is retried (same request ids) this often after errors
BATCH_SIZE = 50
TICK = 0.005  # seconds between the generator's spawns of the requests due
# Operation mix, in per cent of requests (reads: 60).
MIX = {
    "list": 20.0, "detail": 20.0, "series": 20.0, "single": 33.75, "batch": 3.0,
    "rename": 1.5, "status": 1.5, "register": 0.25,
}
READS = ("list", "detail", "series")
INGEST = ("single", "batch")
RSS_GROWTH, P99_FACTOR = 1.10, 1.5
KEEP_REGISTERED = 5  # per user: ``Fleet.registered``


def owner_token(secret: str, subject: str) -> str:
    return issue_token(secret, subject, [SCOPE_MODELS], timedelta(days=1))


def gateway_token(secret: str, owners: list[str]) -> str:
    """The inference gateway's usage:write token, for the models of ``owners`` (subjects)."""
    return issue_token(secret, "soak-gateway", [SCOPE_USAGE_WRITE], timedelta(days=1),
                       grant=UsageGrant(owners=tuple(owners)))


# --- the server ---------------------------------------------------------------------------


def _free_port() -> int:
    import socket  # noqa: PLC0415 - only here

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(pg: str, schema: str, data_dir: Path, secret: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELLEDGER_")}
    return env | {
        "MODELLEDGER_DATABASE_URL": pg,
        "MODELLEDGER_PG_SCHEMA": schema,
        "MODELLEDGER_DATA_DIR": str(data_dir),
        "MODELLEDGER_JWT_SECRET": secret,
        "MODELLEDGER_BASE_URL": f"http://127.0.0.1:{port}",
        "MODELLEDGER_PG_POOL_SIZE": "4",
        # A few principals send hundreds of requests a second: limits are not what this tests.
        "MODELLEDGER_RATE_LIMIT_PER_MINUTE": "0",
        "MODELLEDGER_RATE_LIMIT_INGEST_PER_MINUTE": "0",
        "MODELLEDGER_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def start_server(
    env: dict[str, str], port: int, workers: int, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).status_code == 200:
                return process
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not start; see {log}")
        time.sleep(0.2)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def server_processes(pid: int) -> dict[int, str]:
    """The server and every process below it: pid -> a short label."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            cmdline = Path(f"/proc/{current}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if current == pid:
            found[current] = "serve"
        elif "resource_tracker" in cmdline:
            found[current] = "tracker"
        else:
            found[current] = "worker"
        todo.extend(children.get(current, []))
    return found


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# --- backfill and compaction (run in subprocesses: they must not slow the load loop) --------


def backfill_main(pg: str, schema: str, data_dir: Path, count: int, seed: int) -> None:
    """Record ``count`` usage events that occurred (and were recorded) 31-90 days ago."""
    from config.settings import load_settings  # noqa: PLC0415 - the backfill process only
    from domain.usage import record_usage  # noqa: PLC0415
    from modelledger.bootstrap import build  # noqa: PLC0415

    rng = random.Random(seed)
    container = build(load_settings({}, database_url=pg, pg_schema=schema, data_dir=data_dir,
                                    pg_pool_size=2))
    try:
        with psycopg.connect(pg, autocommit=True) as conn:
            models = conn.execute(
                sql.SQL("SELECT id, owner_id FROM {}.model_view").format(sql.Identifier(schema))
            ).fetchall()
        now = datetime.now(UTC)
        inserted = 0
        for start in range(0, count, 5_000):
            events = []
            for i in range(start, min(count, start + 5_000)):
                model_id, owner_id = rng.choice(models)
                recorded = now - timedelta(days=31, seconds=rng.randint(0, 59 * 86_400))
                events.append(record_usage(
                    model_id=model_id, owner_id=owner_id, request_id=f"old-{seed}-{i}",
                    occurred_at=recorded - timedelta(seconds=rng.randint(0, 600)),
                    response_time_ms=rng.uniform(1, 300), input_bytes=rng.randint(0, 4_000),
                    output_bytes=rng.randint(0, 4_000), success=rng.random() < 0.95,
                    status_code=200, rejected=False, now=recorded,
                ))
            inserted += len(container.usage_log.record(events))
    finally:
        container.close()
    print(json.dumps({"inserted": inserted}))


@dataclass(frozen=True)
class Run:
    """What every part of one soak run needs to know."""

    args: argparse.Namespace
    base_url: str
    secret: str
    env: dict[str, str]  # the server's settings (also those of `modelledger compact`)
    data_dir: Path
    schema: str


@dataclass
class Maintenance:
    backfilled: int = 0
    runs: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    windows: list[tuple[float, float, str]] = field(default_factory=list)  # wall start, end, log


def backfill(run: Run, done: Maintenance) -> None:
    args, started = run.args, time.monotonic()
    fill = subprocess.run(
        [sys.executable, __file__, "--backfill", str(args.backfill), "--seed", str(args.seed),
         "--pg", args.pg, "--schema", run.schema, "--data-dir", str(run.data_dir)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=900,
    )
    if fill.returncode != 0:
        raise SystemExit(f"backfill failed: {fill.stderr.strip()[-500:]}")
    done.backfilled += int(json.loads(fill.stdout.strip().splitlines()[-1])["inserted"])
    print(f"backfilled {done.backfilled} old usage events in {time.monotonic() - started:.1f} s",
          flush=True)


_LOGGED_CLI = (
    "from config.logging_setup import configure_logging; configure_logging('INFO'); "
    "from modelledger.cli import main; main()"
)


def compact(run: Run, minute: int, done: Maintenance) -> None:
    started, wall = time.monotonic(), time.time()
    # With --trace the run logs each chunk (JSON lines on stderr, kept in the trace).
    cli = [sys.executable, "-c", _LOGGED_CLI] if run.args.trace else CLI
    # In a session of its own, as a scheduler or cron would run it: a child of this process
    # would share its CPU scheduling group (Linux autogroups) and slow the load generator.
    result = subprocess.run([*cli, "compact", "--older-than", "0h"], cwd=ROOT,
                            env=run.env | {"COLUMNS": "200"}, capture_output=True,
                            text=True, check=False, timeout=1_800, start_new_session=True)
    done.windows.append((wall, time.time(), result.stderr))
    if result.returncode != 0:
        done.failures.append(f"compact at minute {minute}: {result.stderr.strip()[-300:]}")
        return
    compacted = next((line.split("│")[2].strip() for line in result.stdout.splitlines()
                      if "events" in line and "│" in line), "?")
    when = f"at minute {minute}" if minute else "before the traffic"
    done.runs.append(f"modelledger compact {when}: {compacted} events in "
                     f"{time.monotonic() - started:.1f} s")


# --- the load -------------------------------------------------------------------------------


@dataclass
class Minute:
    done: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    dropped: int = 0
    reads: list[float] = field(default_factory=list)
    ingest: list[float] = field(default_factory=list)
    loop_lag: list[float] = field(default_factory=list)  # ms the generator woke up late


@dataclass
class Ledger:
    acknowledged: int = 0  # usage records the API acknowledged (new or already recorded)
    unacknowledged: int = 0  # records still failing after every attempt (stored or not)
    unexpected_duplicates: int = 0  # "already recorded" without an earlier failed attempt
    unexpected: list[str] = field(default_factory=list)  # 4xx the traffic should not cause


@dataclass
class Fleet:
    """The soak's users and models."""

    owners: list[tuple[str, dict[str, str]]]  # (subject, headers)
    models: dict[str, list[str]]  # subject -> model ids
    status: dict[str, str] = field(default_factory=dict)  # model id -> active/inactive
    renames: int = 0
    # Models the soak registered, per user, deleted oldest first beyond ``KEEP_REGISTERED``:
    # the data set stays the same size (an unbalanced 0.25 % of registrations grew each user's
    # models from 5 to about 230 in 20 minutes, and the list read's work with them). They get
    # no other traffic, so no usage is sent to a model being deleted.
    registered: dict[str, list[tuple[dict[str, str], str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """One minute of the soak, as printed."""

    minute: int
    requests: int
    errors: int
    dropped: int
    read_p50: float | None
    read_p99: float | None
    ingest_p99: float | None
    loop_p99: float | None  # ms late the generator's loop woke: high, and it is the limit
    lag: int | None  # events the projections have yet to fold
    rss: dict[int, int | None]  # server process id -> VmRSS in KiB


@dataclass(frozen=True)
class Result:
    rows: list[Row]
    labels: dict[int, str]  # server process id -> serve, worker, tracker
    ledger: Ledger
    maintenance: Maintenance


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Load:
    def __init__(self, base_url: str, fleet: Fleet, gateway: dict[str, str], rng: random.Random
                 ) -> None:
        self.base_url = base_url
        self.fleet = fleet
        self.gateway = gateway
        self.rng = rng
        self.minutes: list[Minute] = [Minute()]
        self.ledger = Ledger()
        self.counter = 0
        self.kinds = list(MIX)
        self.weights = [MIX[k] for k in self.kinds]
        self.http = httpx.AsyncClient(
            base_url=base_url, timeout=30,
            limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY),
        )
        self.slots = asyncio.Semaphore(CONCURRENCY)
        self.waiting = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.labels: dict[int, str] = {}  # server process id -> serve, worker, tracker
        self.trace: list[tuple[float, str, float, bool]] | None = None  # --trace: every request
        self.lateness: list[tuple[float, float]] | None = None  # --trace: every tick's lateness

    @property
    def minute(self) -> Minute:
        return self.minutes[-1]

    def spawn(self) -> None:
        if self.waiting >= BACKLOG:
            self.minute.dropped += 1
            return
        kind = self.rng.choices(self.kinds, self.weights)[0]
        task = asyncio.get_running_loop().create_task(self.run(kind))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, kind: str) -> None:
        self.waiting += 1
        async with self.slots:
            self.waiting -= 1
            started, wall = time.perf_counter(), time.time()
            try:
                ok = await getattr(self, f"_{kind}")()
            except httpx.HTTPError:
                ok = False
            elapsed = (time.perf_counter() - started) * 1000
        if self.trace is not None:
            self.trace.append((wall, kind, elapsed, ok))
        minute = self.minute
        minute.done[kind] = minute.done.get(kind, 0) + 1
        if not ok:
            minute.errors += 1
        if kind in READS:
            minute.reads.append(elapsed)
        elif kind in INGEST:
            minute.ingest.append(elapsed)

    def _owner(self) -> tuple[str, dict[str, str]]:
        return self.rng.choice(self.fleet.owners)

    def _model(self, subject: str | None = None) -> tuple[str, dict[str, str], str]:
        subject, headers = (subject, dict(self.fleet.owners)[subject]) if subject else self._owner()
        return subject, headers, self.rng.choice(self.fleet.models[subject])

    def _check(self, response: httpx.Response, *expected: int) -> bool:
        if response.status_code in expected:
            return True
        if response.status_code < 500:
            self.ledger.unexpected.append(f"{response.request.method} {response.request.url.path}"
                                          f": {response.status_code} {response.text[:160]}")
        return False

    async def _list(self) -> bool:
        _, headers = self._owner()
        sort = self.rng.choice(["created_at", "-updated_at", "name"])
        response = await self.http.get("/api/models", params={"limit": 20, "sort": sort},
                                       headers=headers)
        return self._check(response, 200)

    async def _detail(self) -> bool:
        _, headers, model_id = self._model()
        return self._check(await self.http.get(f"/api/models/{model_id}", headers=headers), 200)

    async def _series(self) -> bool:
        _, headers, model_id = self._model()
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        # A start that varies by the minute, as dashboards do: every span is new to the cache.
        start = now - timedelta(days=90, minutes=self.rng.randint(0, 1_440))
        params = {"window": "day", "from": start.isoformat(), "to": now.isoformat()}
        response = await self.http.get(f"/api/models/{model_id}/usage", params=params,
                                       headers=headers)
        return self._check(response, 200)

    def _report(self, request_id: str) -> dict[str, Any]:
        rng = self.rng
        return {"request_id": request_id, "response_time_ms": round(rng.uniform(1, 250), 2),
                "input_bytes": rng.randint(10, 4_000), "output_bytes": rng.randint(10, 400),
                "success": rng.random() < 0.97, "status_code": 200}

    async def _ingest(self, path: str, body: dict[str, Any], records: int) -> bool:
        """Send until answered (same request ids); count what was acknowledged."""
        ledger = self.ledger
        for attempt in range(ATTEMPTS):
            try:
                response = await self.http.post(path, json=body, headers=self.gateway)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code < 500:
                if not self._check(response, 200, 201):
                    return False
                duplicates = (
                    int(response.json()["duplicates"]) if records > 1
                    else int(response.status_code == 200)
                )
                if duplicates and attempt == 0:
                    ledger.unexpected_duplicates += duplicates
                ledger.acknowledged += records
                return attempt == 0
            await asyncio.sleep(0.05 * 2**attempt)
        ledger.unacknowledged += records
        return False

    async def _single(self) -> bool:
        _, _, model_id = self._model()
        self.counter += 1
        return await self._ingest(f"/api/models/{model_id}/usage",
                                  self._report(f"s-{self.counter}"), 1)

    async def _batch(self) -> bool:
        self.counter += 1
        records = []
        for k in range(BATCH_SIZE):
            _, _, model_id = self._model()
            records.append({"model_id": model_id, **self._report(f"b-{self.counter}-{k}")})
        return await self._ingest("/api/usage/batch", {"records": records}, BATCH_SIZE)

    async def _rename(self) -> bool:
        _, headers, model_id = self._model()
        self.fleet.renames += 1
        response = await self.http.put(f"/api/models/{model_id}", headers=headers,
                                       json={"name": f"soak-renamed-{self.fleet.renames}"})
        return self._check(response, 200, 409)  # 409: a concurrent command on the same model

    async def _status(self) -> bool:
        _, headers, model_id = self._model()
        new = "active" if self.fleet.status.get(model_id) == "inactive" else "inactive"
        response = await self.http.put(f"/api/models/{model_id}", headers=headers,
                                       json={"status": new})
        if response.status_code == 200:
            self.fleet.status[model_id] = new
        return self._check(response, 200, 409)

    async def _register(self) -> bool:
        subject, headers = self._owner()
        self.fleet.renames += 1
        response = await self.http.post("/api/models", headers=headers,
                                        json={"name": f"soak-new-{self.fleet.renames}"})
        if not self._check(response, 201):
            return False
        mine = self.fleet.registered.setdefault(subject, [])
        mine.append((headers, str(response.json()["id"])))
        if len(mine) <= KEEP_REGISTERED:
            return True
        old_headers, model_id = mine.pop(0)
        deleted = await self.http.delete(f"/api/models/{model_id}", headers=old_headers)
        return self._check(deleted, 204)


async def make_fleet(base_url: str, secret: str, owners: int, models_each: int) -> Fleet:
    fleet = Fleet(owners=[], models={})
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for o in range(owners):
            subject = f"soak-user-{o}"
            headers = {"Authorization": f"Bearer {owner_token(secret, subject)}"}
            fleet.owners.append((subject, headers))
            fleet.models[subject] = []
            for m in range(models_each):
                response = await http.post("/api/models", headers=headers,
                                           json={"name": f"soak-{m}", "framework": "onnx"})
                response.raise_for_status()
                fleet.models[subject].append(str(response.json()["id"]))
    return fleet


# --- the run --------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _lag(base_url: str, admin: dict[str, str]) -> int | None:
    try:
        response = httpx.get(f"{base_url}/api/projections", headers=admin, timeout=5)
        return sum(int(p["lag"]) for p in response.json()) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


async def soak(run: Run, server: subprocess.Popen[bytes]) -> Result:
    args, base_url, secret = run.args, run.base_url, run.secret
    rng = random.Random(args.seed)
    fleet = await make_fleet(base_url, secret, args.owners, args.models)
    gateway = {"Authorization": f"Bearer {gateway_token(secret, [s for s, _ in fleet.owners])}"}
    admin = {"Authorization": f"Bearer {issue_token(secret, 'soak-ops', [SCOPE_ADMIN])}"}
    maintenance = Maintenance()
    if args.backfill:
        await asyncio.to_thread(backfill, run, maintenance)
        await asyncio.to_thread(wait_caught_up, args.pg, run.schema)
        # Compacted before the traffic, as old usage is in a running deployment: the first
        # minute (the p99 baseline) is not the one that compacts the backfill.
        await asyncio.to_thread(compact, run, 0, maintenance)
    load = Load(base_url, fleet, gateway, rng)
    if args.trace:
        load.trace, load.lateness = [], []
    loop = asyncio.get_running_loop()
    started = loop.time()
    finished = started + 60 * args.minutes

    async def generate() -> None:
        """Spawn requests at the rate, every 5 ms those due (a steady, open-loop arrival)."""
        spawned = 0
        while (now := loop.time()) < finished:
            due = int((now - started) * args.rate) - spawned
            for _ in range(max(0, due)):
                load.spawn()
            spawned += max(0, due)
            await asyncio.sleep(TICK)
            late = (loop.time() - now - TICK) * 1000
            load.minute.loop_lag.append(late)
            if load.lateness is not None:
                load.lateness.append((time.time(), late))

    generator = loop.create_task(generate())
    rows = await sample_minutes(run, server, load, admin=admin, maintenance=maintenance,
                                started=started)
    await generator
    if load.tasks:
        await asyncio.wait(load.tasks, timeout=60)
    await load.http.aclose()
    if args.trace:
        write_trace(args.trace, load.trace or [], load.lateness or [], maintenance)
    return Result(rows, load.labels, load.ledger, maintenance)


def write_trace(folder: Path, requests: list[tuple[float, str, float, bool]],
                lateness: list[tuple[float, float]], maintenance: Maintenance) -> None:
    """--trace: every request (wall-clock start, kind, ms, ok), how late each of the
    generator's ticks woke (wall clock, ms) and every compaction run."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "ticks.tsv").open("w") as out:
        out.writelines(f"{t:.4f}\t{ms:.2f}\n" for t, ms in lateness)
    with (folder / "requests.tsv").open("w") as out:
        out.writelines(f"{t:.4f}\t{kind}\t{ms:.2f}\t{int(ok)}\n" for t, kind, ms, ok in requests)
    with (folder / "compactions.tsv").open("w") as out:
        out.writelines(f"{start:.3f}\t{end:.3f}\n" for start, end, _ in maintenance.windows)
    with (folder / "compactions.log").open("w") as out:
        out.writelines(log for _, _, log in maintenance.windows)


async def sample_minutes(run: Run, server: subprocess.Popen[bytes], load: Load, *,
                         admin: dict[str, str], maintenance: Maintenance, started: float
                         ) -> list[Row]:
    """At each minute's end: its statistics, RSS and lag, printed; compaction started."""
    args, loop = run.args, asyncio.get_running_loop()
    rows: list[Row] = []
    compaction: asyncio.Future[None] | None = None
    print(f"{'min':>3} {'req/s':>6} {'errors':>6} {'drop':>5} {'read p50':>8} {'read p99':>8} "
          f"{'ingest p99':>10} {'lag':>7} {'gen cpu':>7} {'gen late':>8} {'host cpu':>8}  "
          "RSS MiB per process", flush=True)
    cpu, host = _cpu_seconds(), _host_busy()
    for minute in range(1, args.minutes + 1):
        if (minute - 1) % args.compact_every == 0 and minute > 1 and (
            compaction is None or compaction.done()
        ):
            compaction = loop.run_in_executor(None, compact, run, minute, maintenance)
        await asyncio.sleep(max(0.0, started + 60 * minute - loop.time()))
        stats, load.minutes = load.minute, [*load.minutes, Minute()]
        used, cpu = _cpu_seconds() - cpu, _cpu_seconds()
        busy, host = _host_busy() - host, _host_busy()
        processes = server_processes(server.pid)
        load.labels |= processes
        sample = {pid: rss_kib(pid) for pid in processes}
        lag = await asyncio.to_thread(_lag, run.base_url, admin)
        row = Row(
            minute=minute, requests=sum(stats.done.values()), errors=stats.errors,
            dropped=stats.dropped, read_p50=percentile(stats.reads, 0.50),
            read_p99=percentile(stats.reads, 0.99), ingest_p99=percentile(stats.ingest, 0.99),
            loop_p99=percentile(stats.loop_lag, 0.99), lag=lag, rss=sample,
        )
        rows.append(row)
        rss = "  ".join(f"{load.labels[p]}[{p}] {_fmt(None if k is None else k / 1024)}"
                        for p, k in sorted(sample.items()) if load.labels[p] != "tracker")
        print(f"{minute:>3} {row.requests / 60:>6.0f} {row.errors:>6} {row.dropped:>5} "
              f"{_fmt(row.read_p50):>8} {_fmt(row.read_p99):>8} "
              f"{_fmt(row.ingest_p99):>10} {_fmt(lag, 0):>7} {used / 60 * 100:>6.0f}% "
              f"{_fmt(row.loop_p99):>8} {busy / 60 * 100:>7.0f}%  {rss}",
              flush=True)
    if compaction is not None:
        await compaction
    return rows


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the load generator's CPU per request is the soak's ceiling."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return uvloop.new_event_loop


def _cpu_seconds() -> float:
    """CPU time of this process (the load generator): when it nears 100 %, it is the limit."""
    times = os.times()
    return times.user + times.system


def _host_busy() -> float:
    """CPU seconds the whole machine has been busy (every core, every process: the server,
    PostgreSQL, this generator and anything else that runs beside the soak)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = fields[3] + fields[4]  # idle and waiting for I/O
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def wait_caught_up(pg: str, schema: str, timeout: float = 180) -> None:
    query = sql.SQL(
        "SELECT (SELECT coalesce(max(notification_id), 0) FROM {s}.usageledger_events), "
        "(SELECT position FROM {s}.projection_state WHERE name = 'usage')"
    ).format(s=sql.Identifier(schema))
    deadline = time.monotonic() + timeout
    with psycopg.connect(pg, autocommit=True) as conn:
        while time.monotonic() < deadline:
            head, position = conn.execute(query).fetchone() or (0, None)
            if position is not None and position >= head:
                return
            time.sleep(0.5)
    raise SystemExit("the usage projection did not catch up")


def counted(pg: str, schema: str) -> int:
    with psycopg.connect(pg, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT coalesce(sum(requests + rejected), 0) FROM {}.usage_model_totals")
            .format(sql.Identifier(schema))
        ).fetchone()
    return int(row[0]) if row else 0


def scheduler_compactions(pg: str, schema: str) -> list[str]:
    """The embedded scheduler's compaction runs (its job history), oldest first."""
    with psycopg.connect(pg, autocommit=True) as conn:
        found = conn.execute(sql.SQL(
            "SELECT to_regclass(%s) IS NOT NULL"), (f"{schema}.job_runs",)).fetchone()
        if not found or not found[0]:
            return []
        rows = conn.execute(sql.SQL(
            "SELECT started_at, outcome, summary FROM {}.job_runs WHERE job = 'compact-usage' "
            "ORDER BY started_at").format(sql.Identifier(schema))).fetchall()
    runs = []
    for started, outcome, summary in rows:
        values = json.loads(summary)
        runs.append(f"scheduler at {started[11:19]}: {outcome}, {values.get('events', '?')} "
                    f"events in {values.get('seconds', '?')} s")
    return runs


def verdict(result: Result, total_counted: int, warmup: int) -> bool:
    rows, labels = result.rows, result.labels
    ledger, maintenance = result.ledger, result.maintenance
    ok = True
    print("\nverdict")
    base, last = rows[min(warmup, len(rows)) - 1].rss, rows[-1].rss
    for pid, label in sorted(labels.items()):
        if label == "tracker":
            continue
        before, after = base.get(pid), last.get(pid)
        if before is None or after is None:
            print(f"  FAIL RSS {label}[{pid}]: not alive from minute {warmup} to the end")
            ok = False
            continue
        growth = after / before
        passed = growth <= RSS_GROWTH
        ok &= passed
        print(f"  {'ok  ' if passed else 'FAIL'} RSS {label}[{pid}]: {before / 1024:.1f} MiB at "
              f"minute {warmup} -> {after / 1024:.1f} MiB ({(growth - 1) * 100:+.1f} %, "
              f"goal <= +{(RSS_GROWTH - 1) * 100:.0f} %)")
    first = rows[0].read_p99
    worst = max((r.read_p99 or 0.0) for r in rows)
    passed = first is not None and worst <= P99_FACTOR * first
    ok &= passed
    print(f"  {'ok  ' if passed else 'FAIL'} read p99: first minute {_fmt(first)} ms, worst "
          f"{_fmt(worst)} ms ({_fmt(worst / first if first else None, 2)}x, goal <= "
          f"{P99_FACTOR}x)")
    acknowledged = ledger.acknowledged + maintenance.backfilled
    passed = total_counted == acknowledged and ledger.unacknowledged == 0
    ok &= passed
    print(f"  {'ok  ' if passed else 'FAIL'} usage counted {total_counted} == acknowledged "
          f"{acknowledged} ({ledger.acknowledged} through the API, {maintenance.backfilled} "
          f"backfilled; {ledger.unacknowledged} never acknowledged)")
    if ledger.unexpected_duplicates:
        ok = False
        print(f"  FAIL {ledger.unexpected_duplicates} records reported as already recorded "
              "on their first attempt")
    errors = sum(r.errors for r in rows)
    dropped = sum(r.dropped for r in rows)
    print(f"  info {sum(r.requests for r in rows)} requests, {errors} errors, {dropped} "
          "dropped by the load generator (backlog full)")
    for line in maintenance.runs:
        print(f"  info compaction: {line}")
    for line in maintenance.failures:
        ok = False
        print(f"  FAIL {line}")
    for line in ledger.unexpected[:10]:
        ok = False
        print(f"  FAIL unexpected answer: {line}")
    print(f"\n{'PASS' if ok else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=20, help="length of the run (default 20)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server (a schema of its own is created there)")
    parser.add_argument("--workers", type=int, default=2, help="serve --workers (default 2)")
    parser.add_argument("--rate", type=float, default=300, help="requests per second (300)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="the minute whose RSS is the baseline (default 3)")
    parser.add_argument("--compact-every", type=int, default=4,
                        help="minutes between compaction runs, the first after minute 1 "
                        "(default 4)")
    parser.add_argument("--backfill", type=int, default=50_000,
                        help="usage events of the past 90 days recorded first (50,000)")
    parser.add_argument("--owners", type=int, default=4, help="users (default 4)")
    parser.add_argument("--models", type=int, default=5, help="models per user (default 5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the schema and data dir")
    parser.add_argument("--trace", type=Path, metavar="DIR",
                        help="write every request's start and duration, the generator's "
                        "lateness per tick and each compaction's chunk log to DIR")
    parser.add_argument("--schema", help=argparse.SUPPRESS)  # for the backfill process
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.schema:  # the backfill process (`backfill_and_compact`)
        backfill_main(args.pg, args.schema, args.data_dir, args.backfill, args.seed)
        return 0
    if args.minutes < 1 or args.compact_every < 1:
        parser.error("--minutes and --compact-every must be at least 1")
    warmup = max(1, min(args.warmup, args.minutes - 1))
    schema = f"soak_{secrets.token_hex(4)}"
    data_dir = Path(tempfile.mkdtemp(prefix="modelledger-soak-"))
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    secret = secrets.token_urlsafe(48)
    port = _free_port()
    env = service_env(args.pg, schema, data_dir, secret, port)
    print(f"soak: {args.minutes} min at {args.rate:.0f} req/s, serve --workers {args.workers}, "
          f"schema {schema}, data {data_dir}", flush=True)
    server = start_server(env, port, args.workers, data_dir / "serve.log")
    try:
        run = Run(args, f"http://127.0.0.1:{port}", secret, env, data_dir, schema)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            result = runner.run(soak(run, server))
        wait_caught_up(args.pg, schema)
        result.maintenance.runs[:0] = scheduler_compactions(args.pg, schema)
        passed = verdict(result, counted(args.pg, schema), warmup)
    finally:
        stop_server(server)
        if not args.keep:
            with psycopg.connect(args.pg, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
