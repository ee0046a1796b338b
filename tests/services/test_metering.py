"""Metering at the source: records are durable locally first, ship to the real event store in
the background, and are counted exactly once through a PostgreSQL outage and a SIGKILL."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from config.settings import load_settings
from domain.usage import PredictionUsage, usage_id
from modelledger.bootstrap import build
from services.container import Container
from services.metering import Meter
from serving.spool import SUFFIX
from tests.faults.processes import ThrowawayPostgres
from tests.helpers import register
from tests.services.spool_helpers import (
    Child,
    live_shipment_marks,
    metered,
    shipment_marks,
    start_postgres,
    stop_postgres,
    stored_request_ids,
    usage_writes_blocked,
)

FLUSH = 30.0  # seconds a flush may take on a busy machine


@pytest.fixture
def meter(container: Container, tmp_path: Path) -> Iterator[Meter]:
    started = Meter(tmp_path / "spool", container.usage)
    started.start()
    yield started
    started.stop()


def _model(container: Container) -> tuple[uuid.UUID, uuid.UUID]:
    owner = uuid.uuid4()
    return register(container, owner, f"m-{uuid.uuid4().hex[:8]}"), owner


def _metering_child(
    container: Container, data_dir: Path, model_id: uuid.UUID, owner: uuid.UUID, total: int,
    *shipping: str,
) -> Child:
    """A process on ``data_dir`` and this test's event store that meters ``total`` calls."""
    settings = container.settings
    postgres = settings.backend == "postgres"
    return Child("meter", str(data_dir), settings.resolved_database_url if postgres else "",
                 settings.pg_schema if postgres else "", str(model_id), str(owner), str(total),
                 *shipping)


class TestShipping:
    async def test_metered_calls_ship_to_the_event_store_naming_who_called(
        self, container: Container, meter: Meter
    ) -> None:
        model_id, owner = _model(container)
        await meter.record(metered(model_id, owner, "ok", api_key_id="k-7", caller="alice",
                                   user_agent="tritonclient/2.5", ip="10.1.2.3"))
        await meter.record(metered(model_id, owner, "bad", success=False, status_code=400,
                                   error="input 'x': wrong shape", api_key_id="", caller="bob"))
        await meter.record(metered(model_id, owner, "off", success=False, status_code=503,
                                   rejected=True))
        assert meter.flush(FLUSH)

        ok = container.usage_log.events.get(usage_id(model_id, "ok", "alice"))
        event = cast("PredictionUsage.Recorded", next(iter(ok)))
        assert (event.sender, event.sender_issuer) == ("modelledger", "")
        assert (event.api_key_id, event.caller) == ("k-7", "alice")
        assert (event.user_agent, event.ip, event.status_code) == ("tritonclient/2.5",
                                                                   "10.1.2.3", 200)
        bad = cast("PredictionUsage.Recorded",
                   next(iter(container.usage_log.events.get(usage_id(model_id, "bad", "bob")))))
        assert (bad.error, bad.caller, bad.api_key_id) == ("input 'x': wrong shape", "bob", "")
        container.projector.catch_up("usage")
        usage = container.models.get(owner, model_id).usage
        assert (usage.requests, usage.successes, usage.failures, usage.rejected) == (2, 1, 1, 1)
        assert meter.shipped == 3
        assert meter.backlog() == 0

    async def test_a_request_id_recorded_twice_is_counted_once(
        self, container: Container, meter: Meter
    ) -> None:
        model_id, owner = _model(container)
        await asyncio.gather(*(meter.record(metered(model_id, owner, "same")) for _ in range(2)))
        assert meter.flush(FLUSH)
        await meter.record(metered(model_id, owner, "same"))  # again, in a later shipment
        assert meter.flush(FLUSH)
        assert stored_request_ids(container) == {"same": 1}
        assert meter.shipped == 1
        container.projector.catch_up("usage")
        assert container.models.get(owner, model_id).usage.requests == 1

    async def test_records_ship_in_the_background_soon_after_they_are_recorded(
        self, container: Container, meter: Meter
    ) -> None:
        model_id, owner = _model(container)
        await asyncio.sleep(0.5)  # the shipper is idle, waiting for a commit
        recorded = time.monotonic()
        await meter.record(metered(model_id, owner, "soon"))
        while not stored_request_ids(container):
            # Idle, the shipper waits on the spool's commits, not on its 30 s timer (the
            # bound leaves room for a loaded machine and still tells the two apart).
            assert time.monotonic() - recorded < 5.0, "not shipped within 5 s"
            await asyncio.sleep(0.02)

    async def test_a_record_breaking_a_rule_or_unreadable_is_skipped_and_the_rest_ship(
        self, container: Container, meter: Meter
    ) -> None:
        model_id, owner = _model(container)
        future = datetime.now(UTC) + timedelta(days=2)
        await meter.record(metered(model_id, owner, "from-the-future", occurred_at=future))
        assert meter._spool is not None
        await meter._spool.append(b"\xc1 not msgpack")
        await meter.record(metered(model_id, owner, "fine"))
        assert meter.flush(FLUSH)
        assert stored_request_ids(container) == {"fine": 1}
        assert (container.usage.measured_refused, meter.unreadable) == (1, 1)

    async def test_stop_leaves_no_empty_spool_behind(
        self, container: Container, tmp_path: Path
    ) -> None:
        model_id, owner = _model(container)
        meter = Meter(tmp_path / "spool", container.usage)
        meter.start()
        await meter.record(metered(model_id, owner, "r"))
        await asyncio.to_thread(meter.stop)  # flushes first
        assert stored_request_ids(container) == {"r": 1}
        assert list((tmp_path / "spool").glob(f"*{SUFFIX}")) == []
        # Its shipment mark retired: past every row, so a copy in flight stores nothing.
        assert len(shipment_marks(container)) == 1
        assert live_shipment_marks(container) == set()


def test_records_acknowledged_by_a_killed_process_ship_once_from_the_next_one(
    container: Container, tmp_path: Path
) -> None:
    model_id, owner = _model(container)
    total = 100_000
    child = _metering_child(container, tmp_path, model_id, owner, total)
    try:
        child.expect("ready")
        with usage_writes_blocked(container):
            child.send("go")
            child.expect("acked ", count=300)
            child.kill()  # while its shipper waits on the event store
    finally:
        child.kill()  # a no-op once killed; after a failure it must not outlive the test
    acked = child.acked()
    assert 300 <= len(acked) < total
    assert stored_request_ids(container) == {}  # nothing shipped before the kill

    meter = Meter(tmp_path / "spool", container.usage)  # a new process on the data directory
    meter.start()
    try:
        assert meter.flush(FLUSH)
    finally:
        meter.stop()
    stored = stored_request_ids(container)
    assert set(stored.values()) == {1}  # each exactly once
    assert acked <= set(stored)  # every acknowledged record, perhaps some in flight too
    assert set(stored) <= {f"req-{i}" for i in range(total)}
    container.projector.catch_up("usage")
    assert container.models.get(owner, model_id).usage.requests == len(stored)
    assert list((tmp_path / "spool").glob(f"*{SUFFIX}")) == []  # the orphan shipped, removed
    assert len(shipment_marks(container)) == 2  # the orphan's mark and the new process's,
    assert live_shipment_marks(container) == set()  # both retired


class TestOneProcessShippingEverySpool:
    """``serve`` with several workers: the workers only record, the supervisor ships."""

    async def test_the_spools_of_processes_that_only_record_are_shipped_by_it(
        self, container: Container, tmp_path: Path
    ) -> None:
        model_id, owner = _model(container)
        recorder = Meter(tmp_path / "spool", container.usage, shipping="none")
        shipper = Meter(tmp_path / "spool", container.usage, shipping="all")
        recorder.start()
        shipper.start()
        try:
            await asyncio.gather(*(recorder.record(metered(model_id, owner, f"r{i}"))
                                   for i in range(5)))
            assert await asyncio.to_thread(recorder.flush, FLUSH)
            assert stored_request_ids(container) == {f"r{i}": 1 for i in range(5)}
            assert (recorder.shipped, shipper.shipped) == (0, 5)
            await asyncio.to_thread(recorder.stop)  # its spool is empty: removed
        finally:
            await asyncio.to_thread(shipper.stop)
        assert list((tmp_path / "spool").iterdir()) == []

    def test_a_killed_recorder_s_records_ship_once_live_and_after_the_kill(
        self, container: Container, tmp_path: Path
    ) -> None:
        model_id, owner = _model(container)
        total = 100_000
        child = _metering_child(container, tmp_path, model_id, owner, total, "none")
        shipper = Meter(tmp_path / "spool", container.usage, shipping="all")
        shipper.start()
        try:
            child.expect("ready")
            child.send("go")
            child.expect("acked ", count=300)
            deadline = time.monotonic() + FLUSH
            while shipper.shipped == 0:  # shipped from the live process's spool
                assert time.monotonic() < deadline, "nothing shipped from the live spool"
                time.sleep(0.05)
            child.kill()
            assert shipper.flush(FLUSH)
        finally:
            child.kill()
            shipper.stop()
        acked = child.acked()
        stored = stored_request_ids(container)
        assert set(stored.values()) == {1}
        assert acked <= set(stored)
        assert set(stored) <= {f"req-{i}" for i in range(total)}
        assert list((tmp_path / "spool").glob(f"*{SUFFIX}")) == []  # adopted once dead, removed


@pytest.fixture
def outage_container(postgres: ThrowawayPostgres, tmp_path: Path) -> Iterator[Container]:
    built = build(load_settings({}, data_dir=tmp_path, database_url=postgres.url,
                                pg_schema="public", pg_pool_size=4))
    yield built
    built.close()


@pytest.mark.slow
@pytest.mark.postgres
async def test_while_postgres_is_down_calls_are_recorded_locally_and_ship_once_when_it_returns(
    postgres: ThrowawayPostgres, outage_container: Container, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    container = outage_container
    model_id, owner = _model(container)
    shipments: list[int] = []
    notify = container.usage.on_recorded
    assert notify is not None

    def count_shipment() -> None:  # once per event-store transaction that stored records
        shipments.append(1)
        notify()

    container.usage.on_recorded = count_shipment
    meter = Meter(tmp_path / "spool", container.usage, batch=20)
    meter.start()
    try:
        await meter.record(metered(model_id, owner, "before"))
        assert meter.flush(FLUSH)

        await asyncio.to_thread(stop_postgres, postgres)
        slowest = 0.0
        for i in range(50):
            started = time.monotonic()
            await meter.record(metered(model_id, owner, f"during-{i}"))
            slowest = max(slowest, time.monotonic() - started)
        # An append never waits for the event store (a shipment waits 30 s for a connection).
        assert slowest < 5.0
        # A shipment waits for a pooled connection (30 s, the library's default), then fails
        # and is retried after a backoff.
        deadline = time.monotonic() + 2 * FLUSH
        while meter.failures < 1:
            assert time.monotonic() < deadline, "the shipper never reported a failure"
            await asyncio.sleep(0.1)
        assert meter.backlog() == 50
        assert not await asyncio.to_thread(meter.flush, 0.5)
        shipments.clear()

        await asyncio.to_thread(start_postgres, postgres)
        back = time.monotonic()
        assert await asyncio.to_thread(meter.flush, FLUSH)
        print(f"\nbacklog shipped {time.monotonic() - back:.2f} s after PostgreSQL was back")  # noqa: T201 - the report quotes it
    finally:
        await asyncio.to_thread(meter.stop)
    assert len(shipments) == 3  # the backlog shipped in batches of 20: 20, 20, 10
    failures = [r for r in caplog.records if r.name == "modelledger.metering"]
    assert failures
    assert all(r.levelno == logging.WARNING for r in failures)
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in failures)
    assert "during-" not in logged  # no record's contents in the log
    assert "tritonclient" not in logged
    stored = stored_request_ids(container)
    assert stored == {"before": 1} | {f"during-{i}": 1 for i in range(50)}
    container.projector.catch_up("usage")
    assert container.models.get(owner, model_id).usage.requests == 51
