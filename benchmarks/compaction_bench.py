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
5. Repeats 3-4 ``--repeat`` times on the same data (restored from a copy of the generated
   table between runs) and prints the medians; client CPU time is ``time.process_time`` of
   this process (less noisy than wall time on a shared machine).
6. Sizes again: after compaction, after VACUUM, after VACUUM FULL.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config.settings import load_settings
from domain.usage import record_usage
from eventstore.compaction import compaction_recorder
from modelledger.bootstrap import build
from scheduler.compaction import CompactionSummary, compact_usage
from services.models import Actor

if TYPE_CHECKING:
    from collections.abc import Callable

    from services.container import Container

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
        container.usage_log.record(events)
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
        container.usage_log.record(events)
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
    if process.stdout is None or process.stdout.readline().strip() != "ready":
        raise RuntimeError("the ingest worker did not start")
    time.sleep(1.0)  # warm up: connections, prepared statements
    start = time.monotonic()
    meanwhile()
    end = time.monotonic()
    stop_file.touch()
    out, _ = process.communicate(timeout=600)
    batches: list[list[float]] = json.loads(out.strip().splitlines()[-1])  # [time, count]
    return sum(n for t, n in batches if start <= t <= end) / (end - start)


def _sizes(container: Container, events: int, label: str) -> None:
    size = compaction_recorder(container.usage_log.recorder).live_bytes() or 0
    print(f"  {label:<34} {size / 2**20:9.1f} MiB  {size / events:7.1f} B/usage event")


def _restore(schema: str, data_dir: str) -> None:
    """Put the generated raw events back (from ``_raw_copy``); empty compacted ids, archive."""
    events = f'"{schema}".usageledger_events'
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(f'TRUNCATE {events}, "{schema}".usage_compacted_ids')
        conn.execute(f'INSERT INTO {events} SELECT * FROM "{schema}"._raw_copy')
        conn.execute(f'VACUUM ANALYZE "{schema}".usageledger_events')
        conn.execute("CHECKPOINT")
    shutil.rmtree(Path(data_dir) / "archive", ignore_errors=True)


def _compact(container: Container, **kwargs: Any) -> tuple[CompactionSummary, float]:
    """A compaction run and its client CPU time (this process) in seconds."""
    cpu = time.process_time()
    summary = compact_usage(container, older_than=timedelta(days=30), **kwargs)
    return summary, time.process_time() - cpu


def _run(
    container: Container, schema: str, data_dir: str, head: int, args: Any
) -> dict[str, float]:
    """One measurement: ingest alone, ingest during compaction of ``extra``, compaction alone."""
    baseline = _ingest_rate(schema, data_dir, lambda: time.sleep(args.window))
    runs: list[tuple[CompactionSummary, float]] = []
    during = _ingest_rate(
        schema,
        data_dir,
        lambda: runs.append(_compact(container, max_chunks=args.extra // BATCH)),
    )
    first, first_cpu = runs[0]
    print(
        f"  compaction during ingest: {first.events:,} events in {first.seconds:.2f} s = "
        f"{first.events / first.seconds:,.0f} events/s, client CPU "
        f"{first_cpu / first.events * 1e6:.1f} us/event, longest insert-lock hold "
        f"{first.longest_lock_s * 1000:.0f} ms"
    )
    print(
        f"  ingest (separate process, 1,000-event batches): alone {baseline:,.0f} events/s, "
        f"during compaction {during:,.0f} events/s = {during / baseline:.0%}"
    )
    # Drop the fresh events again so that sizes describe the old usage only.
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(
            f'DELETE FROM "{schema}".usageledger_events WHERE notification_id > %s', (head,)
        )
    summary, cpu = _compact(container)
    print(
        f"  compaction alone: {summary.events:,} events -> {summary.rollups_written:,} "
        f"roll-ups ({summary.rollups_merged:,} merged with earlier ones) in "
        f"{summary.seconds:.2f} s = {summary.events / summary.seconds:,.0f} events/s, client CPU "
        f"{cpu / summary.events * 1e6:.1f} us/event ({summary.chunks} chunks, longest insert-lock "
        f"hold {summary.longest_lock_s * 1000:.0f} ms, archive "
        f"{summary.archived_bytes / 2**20:.1f} MiB)"
    )
    return {
        "alone_rate": summary.events / summary.seconds,
        "alone_cpu_us": cpu / summary.events * 1e6,
        "during_rate": first.events / first.seconds,
        "during_cpu_us": first_cpu / first.events * 1e6,
        "ingest_ratio": during / baseline,
        "ingest_alone": baseline,
    }


def _medians(results: list[dict[str, float]]) -> None:
    print(f"medians of {len(results)} runs:")
    for key in results[0]:
        values = sorted(r[key] for r in results)
        shown = ", ".join(f"{v:,.3g}" for v in values)
        print(f"  {key:<14} {statistics.median(values):>12,.3f}   ({shown})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--extra", type=int, default=400_000)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3, help="measurements on the same data")
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
        head = container.usage_log.recorder.max_notification_id() or 0
        with container.store.write("usage") as cur:
            container.store.set_position(cur, "usage", head)
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(
                f'CREATE TABLE "{schema}"._raw_copy AS SELECT * FROM "{schema}".usageledger_events'
            )
            # Month-old rows have long been vacuumed (hint bits set) by autovacuum.
            conn.execute(f'VACUUM ANALYZE "{schema}".usageledger_events')
            conn.execute("CHECKPOINT")
        print("store size:")
        _sizes(container, total, "before compaction")

        results = []
        for run in range(args.repeat):
            if run:
                _restore(schema, data_dir)
            print(f"run {run + 1} of {args.repeat}:")
            results.append(_run(container, schema, data_dir, head, args))
        _medians(results)

        print("store size (last run):")
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
