"""The projection worker: follows new events, hands over leadership, survives being killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.settings import Settings
from domain.usage import record_usage
from modelledger.bootstrap import build
from projections.worker import Leadership, Wakeups, Worker
from services.container import Container
from tests.helpers import register

ROOT = Path(__file__).resolve().parents[2]


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.02)


def position(container: Container, name: str) -> int:
    return container.store.positions().get(name, (0, 0, ""))[0]


def load_usage(container: Container, owner: uuid.UUID, model_id: uuid.UUID, count: int) -> None:
    now = datetime.now(UTC)
    start = now - timedelta(days=3)
    for offset in range(0, count, 10_000):
        container.usage_log.record([
            record_usage(model_id=model_id, owner_id=owner, request_id=f"k{i}",
                         occurred_at=start + timedelta(seconds=i), response_time_ms=1 + i % 97,
                         input_bytes=i % 1000, output_bytes=1, success=i % 13 != 0, now=now)
            for i in range(offset, min(count, offset + 10_000))
        ])


def leadership(container: Container) -> Leadership:
    settings = container.settings
    conninfo = None if settings.backend == "sqlite" else settings.postgres_conninfo()
    return Leadership(
        conninfo=conninfo, lock_dir=settings.data_dir / "locks", scope=settings.pg_schema
    )


class TestFollowing:
    def test_the_worker_picks_up_new_usage_without_being_asked(self, container: Container) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "m")
        stop = threading.Event()
        threads = container.start_worker(stop)
        try:
            load_usage(container, owner, model_id, 500)
            container.wakeups.notify("usage") if container.settings.backend == "sqlite" else None
            wait_until(lambda: container.models.get(owner, model_id).usage.requests
                       + container.models.get(owner, model_id).usage.rejected == 500)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=5)

    def test_a_poll_catches_up_even_when_no_notification_arrives(self, settings: Settings) -> None:
        container = build(Settings(**{**settings.__dict__, "poll_interval": 0.2}))
        try:
            owner = uuid.uuid4()
            model_id = register(container, owner, "m")
            worker = Worker(
                container.projector,
                leadership(container),
                Wakeups(["registry", "usage"]),
                poll_interval=0.2,
            )
            stop = threading.Event()
            threads = worker.start(stop)  # no LISTEN thread, no wake-ups: polling only
            load_usage(container, owner, model_id, 300)
            wait_until(lambda: position(container, "usage") == 300)
            stop.set()
            for t in threads:
                t.join(timeout=5)
        finally:
            container.close()

    def test_a_trickle_is_folded_in_a_few_lingering_transactions_and_every_event_lands(
        self, container: Container, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "m")
        folded: list[int] = []
        catch_up = container.projector.catch_up

        def observed(name: str) -> int:  # records how many events each transaction folded
            processed = catch_up(name)
            if name == "usage" and processed:
                folded.append(processed)
            return processed

        monkeypatch.setattr(container.projector, "catch_up", observed)
        wakeups = Wakeups(["registry", "usage"])
        worker = Worker(container.projector, leadership(container), wakeups, poll_interval=0.05,
                        linger=0.25)
        stop = threading.Event()
        threads = worker.start(stop)
        now = datetime.now(UTC)
        try:
            for burst in range(20):  # 100 events in 20 small appends over about half a second
                container.usage_log.record([
                    record_usage(model_id=model_id, owner_id=owner, request_id=f"t{burst}-{i}",
                                 occurred_at=now, response_time_ms=5, input_bytes=1,
                                 output_bytes=1, success=True, now=now)
                    for i in range(5)
                ])
                wakeups.notify("usage")
                time.sleep(0.025)
            wait_until(lambda: position(container, "usage") == 100)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=5)
        assert sum(folded) == 100
        assert len(folded) <= 8  # without the linger: about one per append (20)
        assert container.models.get(owner, model_id).usage.requests == 100

    def test_a_standby_worker_takes_over_when_the_leader_stops(self, container: Container) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "m")
        wakeups = Wakeups(["registry", "usage"])
        first = Worker(container.projector, leadership(container), wakeups, poll_interval=0.1)
        second = Worker(container.projector, leadership(container), wakeups, poll_interval=0.1)
        stop_first, stop_second = threading.Event(), threading.Event()
        first_threads = first.start(stop_first)
        wait_until(lambda: first.leading == {"models", "usage"})
        second_threads = second.start(stop_second)
        time.sleep(0.3)
        assert second.leading == set()  # standing by
        stop_first.set()
        for t in first_threads:
            t.join(timeout=5)
        wait_until(lambda: second.leading == {"models", "usage"})
        load_usage(container, owner, model_id, 100)
        wait_until(lambda: position(container, "usage") == 100)
        stop_second.set()
        for t in second_threads:
            t.join(timeout=5)


@pytest.mark.slow
def test_killing_a_worker_mid_batch_never_counts_anything_twice(container: Container) -> None:
    """SIGKILL the worker process three times while it works through a backlog."""
    owner = uuid.uuid4()
    model_id = register(container, owner, "m")
    total = 100_000
    load_usage(container, owner, model_id, total)
    settings = container.settings
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MODELLEDGER_DATA_DIR": str(settings.data_dir),
        "MODELLEDGER_DATABASE_URL": settings.database_url,
        "MODELLEDGER_PG_SCHEMA": settings.pg_schema,
        "MODELLEDGER_PROJECTION_BATCH_SIZE": "1000",
    }
    kills = 0
    for kill_after in (0.05, 0.15, 0.1):
        before = position(container, "usage")
        if before >= total:
            break
        process = subprocess.Popen([sys.executable, "-m", "modelledger", "worker"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def advanced(before: int = before) -> bool:
                return position(container, "usage") > before

            wait_until(advanced, timeout=60)
            time.sleep(kill_after)
            if position(container, "usage") < total:
                process.send_signal(signal.SIGKILL)
                kills += 1
        finally:
            process.kill()
            process.wait()
    assert kills >= 1, "the worker finished before it could be killed: use a bigger backlog"
    container.projector.catch_up("usage")
    usage = container.models.get(owner, model_id).usage
    assert usage.requests + usage.rejected == total
    assert usage.failures == sum(1 for i in range(total) if i % 13 == 0)
    assert usage.input_bytes == sum(i % 1000 for i in range(total))
