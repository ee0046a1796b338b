"""Benchmark usage compaction on PostgreSQL (not a test; run by hand).

    .venv/bin/python benchmarks/compaction_bench.py [--events 1000000] [--extra 400000]

1. Appends ``events + extra`` raw usage events 31-60 days old, in time order, over 50 models
   (about 40 per model-hour), in batches of
   20,000 through ``UsageLedger.record``; marks the usage projection as caught up by setting
   its tracking position to the head (compaction only needs the position; folding 1.4 M events
   would only lengthen the set-up).
2. Live store size per usage event (events table + indexes + compacted-ids table).
3. Ingest throughput of a separate process (its own GIL, like an API worker) appending
   1,000-event batches of fresh usage: alone for ``--window`` seconds, then while this process
   compacts the first ``extra`` events; only batches finishing inside the compaction count.
   The fresh events are deleted again afterwards (they lie beyond the compacted range).
4. Compacts the remaining ``events`` raw events alone (chunks of 20,000, archive on): events/s.
5. Sizes again: after compaction, after VACUUM, after VACUUM FULL.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from domain.usage import record_usage
from modelledger.bootstrap import Container, build
from modelledger.compaction_recorders import compaction_recorder
from modelledger.services import Actor
from modelledger.settings import load_settings
from scheduler.compaction import CompactionSummary, compact_usage

URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 20_000


def _container(schema: str, data_dir: str) -> Container:
    return build(
        load_settings(
            {}, data_dir=Path(data_dir), database_url=URL, pg_schema=schema, pg_pool_size=4
        )
    )


def _models(container: Container) -> list[tuple[uuid.UUID, uuid.UUID]]:
    store = container.store
    with store.read() as cur:
        cur.execute("SELECT id, owner_id FROM model_view")
        return [(row[0], row[1]) for row in cur.fetchall()]


def _generate(container: Container, count: int, models: list[tuple[uuid.UUID, uuid.UUID]]) -> float:
    rng = random.Random(1)
    now = datetime.now(UTC)
    started = time.monotonic()
    for start in range(0, count, BATCH):
        events = []
        for i in range(start, min(count, start + BATCH)):
            model = rng.choice(models)
            # In arrival order, as a gateway reports them (a few seconds of jitter).
            age = 60 * 86_400 - i * 29 * 86_400 // count + rng.randint(0, 5)
            occurred = now - timedelta(seconds=age)
            events.append(
                record_usage(
                    model_id=model[0],
                    owner_id=model[1],
                    request_id=f"old-{i}",
                    occurred_at=occurred,
                    response_time_ms=rng.uniform(1, 500),
                    input_bytes=rng.randint(100, 5_000),
                    output_bytes=rng.randint(100, 5_000),
                    success=rng.random() < 0.95,
                    status_code=200,
                    now=occurred + timedelta(seconds=rng.randint(0, 5)),
                )
            )
        container.usage_ledger.record(events)
    return count / (time.monotonic() - started)


def _ingest_worker(schema: str, data_dir: str, stop_file: str) -> None:
    """Append fresh 1,000-event batches until ``stop_file`` exists; print [(end, count)]."""
    container = _container(schema, data_dir)
    models = _models(container)
    rng = random.Random()
    done: list[tuple[float, int]] = []
    print("ready", flush=True)
    while not Path(stop_file).exists():
        now = datetime.now(UTC)
        events = [
            record_usage(
                model_id=m[0],
                owner_id=m[1],
                request_id=uuid.uuid4().hex,
                occurred_at=now,
                response_time_ms=rng.uniform(1, 500),
                input_bytes=100,
                output_bytes=100,
                success=True,
                now=now,
            )
            for m in (rng.choice(models) for _ in range(1_000))
        ]
        container.usage_ledger.record(events)
        done.append((time.monotonic(), len(events)))
    print(json.dumps(done), flush=True)
    container.close()


def _ingest_rate(schema: str, data_dir: str, meanwhile: Callable[[], None]) -> float:
    """Events/s a separate ingest process appends while ``meanwhile`` runs."""
    stop_file = Path(data_dir) / f"stop-{secrets.token_hex(4)}"
    process = subprocess.Popen(  # noqa: S603 - this interpreter and this script
        [sys.executable, __file__, "--ingest-worker", schema, data_dir, str(stop_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    time.sleep(1.0)  # warm up: connections, prepared statements
    start = time.monotonic()
    meanwhile()
    end = time.monotonic()
    stop_file.touch()
    out, _ = process.communicate(timeout=600)
    batches = json.loads(out.strip().splitlines()[-1])
    return sum(n for t, n in batches if start <= t <= end) / (end - start)


def _sizes(container: Container, events: int, label: str) -> None:
    size = compaction_recorder(container.usage_ledger.recorder).live_bytes() or 0
    print(f"  {label:<34} {size / 2**20:9.1f} MiB  {size / events:7.1f} B/usage event")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--extra", type=int, default=400_000)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--ingest-worker", nargs=3)
    args = parser.parse_args()
    if args.ingest_worker:
        _ingest_worker(*args.ingest_worker)
        return

    schema = f"bench_{secrets.token_hex(4)}"
    data_dir = tempfile.mkdtemp(prefix="compaction-bench-")
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    container = _container(schema, data_dir)
    try:
        for i in range(50):
            owner = uuid.UUID(int=i % 5 + 1)
            container.models.register(Actor(owner, "bench"), name=f"m{i}", framework="torch")
        container.projector.catch_up_all()
        models = _models(container)
        total = args.events + args.extra
        rate = _generate(container, total, models)
        print(f"generated {total:,} raw usage events at {rate:,.0f} events/s")
        head = container.usage_ledger.recorder.max_notification_id() or 0
        with container.store.write("usage") as cur:
            container.store.set_position(cur, "usage", head)
        print("store size:")
        _sizes(container, total, "before compaction")

        # Ingest alone, then during the compaction of the first ``extra`` events.
        baseline = _ingest_rate(schema, data_dir, lambda: time.sleep(args.window))
        runs: list[CompactionSummary] = []
        during = _ingest_rate(
            schema,
            data_dir,
            lambda: runs.append(
                compact_usage(
                    container, older_than=timedelta(days=30), max_chunks=args.extra // BATCH
                )
            ),
        )
        first = runs[0]
        print(  # noqa: T201
            f"compaction during ingest: {first.events:,} events in {first.seconds:.2f} s = "
            f"{first.events / first.seconds:,.0f} events/s, longest insert-lock hold "
            f"{first.longest_lock_s * 1000:.0f} ms"
        )
        print(  # noqa: T201
            f"ingest (separate process, 1,000-event batches): alone {baseline:,.0f} events/s, "
            f"during compaction {during:,.0f} events/s = {during / baseline:.0%}"
        )
        # Drop the fresh events again so that sizes describe the old usage only.
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(
                f'DELETE FROM "{schema}".usageledger_events WHERE notification_id > %s', (head,)
            )

        summary = compact_usage(container, older_than=timedelta(days=30))
        print(  # noqa: T201
            f"compaction alone: {summary.events:,} events -> {summary.rollups_written:,} "
            f"roll-ups ({summary.rollups_merged:,} merged with earlier ones) in "
            f"{summary.seconds:.2f} s = {summary.events / summary.seconds:,.0f} events/s "
            f"({summary.chunks} chunks, longest insert-lock hold "
            f"{summary.longest_lock_s * 1000:.0f} ms, archive {summary.archived_bytes / 2**20:.1f} MiB)"
        )
        print("store size:")  # noqa: T201
        _sizes(container, total, "after compacting all")
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(f'VACUUM "{schema}".usageledger_events')
            _sizes(container, total, "after VACUUM")
            conn.execute(f'VACUUM FULL "{schema}".usageledger_events')
            conn.execute(f'VACUUM FULL "{schema}".usage_compacted_ids')
            _sizes(container, total, "after VACUUM FULL")
    finally:
        container.close()
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
