"""Rebuild throughput of the usage projection for N raw usage events (default 1,000,000).

    .venv/bin/python benchmarks/rebuild_bench.py --backend postgres --dsn postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python benchmarks/rebuild_bench.py --backend sqlite

Loads M models and N usage events spread over D days (time-ordered, Zipf-like popularity,
latencies log-normal, 3 % failures) straight into the usage event log, then times
``projector.rebuild("usage")`` R times and prints the median events/s. The data stays in a
throwaway schema (PostgreSQL) or a temporary directory (SQLite).
"""

from __future__ import annotations

import argparse
import platform
import random
import secrets
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from config.settings import load_settings
from domain.usage import record_usage
from modelledger.bootstrap import build


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ml-bench-"))
    schema = f"bench_{secrets.token_hex(4)}"
    if args.backend == "postgres":
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        settings = load_settings({}, data_dir=tmp, database_url=args.dsn, pg_schema=schema,
                                 projection_batch_size=args.batch_size)
    else:
        settings = load_settings({}, data_dir=tmp, projection_batch_size=args.batch_size)
    container = build(settings)
    try:
        rng = random.Random(42)
        owners = [uuid.uuid4() for _ in range(max(1, args.models // 10))]
        models = [(uuid.uuid4(), owners[i % len(owners)]) for i in range(args.models)]
        weights = [1 / (rank + 1) for rank in range(args.models)]  # Zipf-like popularity
        start = datetime.now(UTC) - timedelta(days=args.days)
        step = timedelta(days=args.days) / args.events
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        chunk = 20_000
        for offset in range(0, args.events, chunk):
            n = min(chunk, args.events - offset)
            picks = rng.choices(models, weights=weights, k=n)
            events = [
                record_usage(
                    model_id=model_id, owner_id=owner_id, request_id=f"b{offset + i}",
                    occurred_at=start + (offset + i) * step,
                    response_time_ms=round(rng.lognormvariate(3.5, 0.6), 3),
                    input_bytes=rng.randint(100, 50_000), output_bytes=rng.randint(10, 5_000),
                    success=rng.random() > 0.03, status_code=200, now=now,
                )
                for i, (model_id, owner_id) in enumerate(picks)
            ]
            container.usage_log.record(events)
        load_s = time.perf_counter() - t0
        print(f"loaded {args.events:,} usage events for {args.models:,} models in {load_s:.1f} s "
              f"({args.events / load_s:,.0f} events/s through UsageLedger.record)")
        rates = []
        for run in range(args.repeat):
            t, cpu = time.perf_counter(), time.process_time()
            count = container.projector.rebuild("usage")
            elapsed, cpu = time.perf_counter() - t, time.process_time() - cpu
            rates.append(count / elapsed)
            print(f"rebuild {run + 1}: {count:,} events in {elapsed:.1f} s "
                  f"= {count / elapsed:,.0f} events/s"
                  f" (client CPU {cpu / count * 1e6:.1f} us/event)")
        print(f"median rebuild throughput ({args.backend}, batch {args.batch_size}): "
              f"{statistics.median(rates):,.0f} events/s "
              f"on {platform.processor() or platform.machine()}, "
              f"Python {platform.python_version()}")
    finally:
        container.close()
        if args.backend == "postgres":
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
