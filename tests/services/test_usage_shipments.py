"""A shipment of metered usage: calls whose request id the service generated are stored as one
batch per model, version and hour; a shipment (or its part) stored before is never stored again."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.usage_batch import UsageBatch
from eventstore.ports import RETIRED_KEPT_SECONDS, RETIRED_MARK
from services.container import Container
from services.usage import MeteredUsage
from tests.helpers import dump, register, stored_usage
from tests.services.spool_helpers import (
    metered,
    shipment_marks,
    stored_request_ids,
    usage_writes_blocked,
)

SPOOL = "0f" * 16  # a spool's name: its file's uuid4 hex


def _model(container: Container) -> tuple[uuid.UUID, uuid.UUID]:
    owner = uuid.uuid4()
    return register(container, owner, f"m-{uuid.uuid4().hex[:8]}"), owner


def _generated(model_id: uuid.UUID, owner: uuid.UUID, count: int, prefix: str = "g",
               **changes: object) -> list[MeteredUsage]:
    return [metered(model_id, owner, f"{prefix}{i}", generated_id=True, **changes)
            for i in range(count)]


def _batches(container: Container) -> list[UsageBatch.Recorded]:
    log = container.usage_log
    events = (log.mapper.to_domain_event(n) for n in log.recorder.select_notifications(1, 10**9))
    return [e for e in events if isinstance(e, UsageBatch.Recorded)]


class TestBatching:
    def test_generated_ids_become_one_batch_per_model_and_version(
        self, container: Container
    ) -> None:
        model_id, owner = _model(container)
        other, _ = _model(container)
        rows = [(1, _generated(model_id, owner, 3)),
                (2, [*_generated(other, owner, 2), *_generated(model_id, owner, 2, "v2-",
                                                                model_version=2)])]
        assert container.usage.ship_measured(SPOOL, rows) == 7
        batches = {(b.model_id, b.model_version): len(b.calls) for b in _batches(container)}
        assert batches == {(model_id, 1): 3, (other, 1): 2, (model_id, 2): 2}

    def test_calls_of_two_hours_make_two_batches_each_in_its_hour(
        self, container: Container
    ) -> None:
        model_id, owner = _model(container)
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        calls = [metered(model_id, owner, "late", generated_id=True,
                         occurred_at=hour - timedelta(microseconds=1)),
                 metered(model_id, owner, "early", generated_id=True, occurred_at=hour)]
        container.usage.ship_measured(SPOOL, [(1, calls)])
        by_hour = {b.hour: [c.request_id for c in b.calls] for b in _batches(container)}
        first = int(hour.timestamp()) // 3600
        assert by_hour == {first - 1: ["late"], first: ["early"]}

    def test_a_named_request_id_is_an_event_of_its_own_counted_once_across_shipments(
        self, container: Container
    ) -> None:
        model_id, owner = _model(container)
        container.usage.ship_measured(SPOOL, [(1, [metered(model_id, owner, "named")])])
        container.usage.ship_measured(SPOOL, [(2, [metered(model_id, owner, "named")])])
        assert _batches(container) == []
        assert stored_request_ids(container) == {"named": 1}

    def test_a_batch_keeps_every_field_of_every_call(self, container: Container) -> None:
        model_id, owner = _model(container)
        call = metered(model_id, owner, "g1", generated_id=True, success=False,
                       status_code=400, error="input 'X': wrong shape", user_agent="curl/8",
                       ip="10.0.0.7", api_key_id="k-1", caller="key:k-1")
        container.usage.ship_measured(SPOOL, [(1, [call])])
        (stored,) = stored_usage(container)
        assert (stored.model_id, stored.owner_id, stored.request_id) == (model_id, owner, "g1")
        assert (stored.success, stored.status_code, stored.error) == (
            False, 400, "input 'X': wrong shape")
        assert (stored.user_agent, stored.ip, stored.api_key_id, stored.caller) == (
            "curl/8", "10.0.0.7", "k-1", "key:k-1")
        assert (stored.sender, stored.response_time_ms, stored.occurred_at) == (
            "modelledger", call.response_time_ms, call.occurred_at)

    def test_a_call_breaking_a_rule_is_left_out_and_the_rest_are_stored(
        self, container: Container
    ) -> None:
        model_id, owner = _model(container)
        bad = metered(model_id, owner, "bad", generated_id=True, ip="not-an-address")
        stored = container.usage.ship_measured(
            SPOOL, [(1, [bad, *_generated(model_id, owner, 2)])])
        assert stored == 2
        assert sorted(stored_request_ids(container)) == ["g0", "g1"]
        assert container.usage.measured_refused == 1


class TestExactlyOnce:
    def test_a_shipment_stored_before_stores_nothing_again(self, container: Container) -> None:
        # The shipper died after the event store's commit, before deleting the spool's rows.
        model_id, owner = _model(container)
        rows = [(1, _generated(model_id, owner, 3)), (2, [metered(model_id, owner, "named")])]
        assert container.usage.ship_measured(SPOOL, rows) == 4
        assert container.usage.ship_measured(SPOOL, rows) == 0
        assert sorted(stored_request_ids(container).items()) == [
            ("g0", 1), ("g1", 1), ("g2", 1), ("named", 1)]

    def test_a_repeated_shipment_with_rows_added_since_stores_only_those(
        self, container: Container
    ) -> None:
        model_id, owner = _model(container)
        first = [(1, _generated(model_id, owner, 2, "a")), (2, _generated(model_id, owner, 2, "b"))]
        container.usage.ship_measured(SPOOL, first)
        again = [*first, (3, _generated(model_id, owner, 2, "c"))]
        assert container.usage.ship_measured(SPOOL, again) == 2
        assert set(stored_request_ids(container).values()) == {1}
        assert len(stored_request_ids(container)) == 6

    def test_each_spool_has_its_own_mark(self, container: Container) -> None:
        model_id, owner = _model(container)
        container.usage.ship_measured(SPOOL, [(5, _generated(model_id, owner, 1, "a"))])
        other_spool = "1e" * 16
        assert container.usage.ship_measured(
            other_spool, [(1, _generated(model_id, owner, 1, "b"))]) == 1
        assert container.usage_log.shipped_through(SPOOL) == 5
        assert container.usage_log.shipped_through(other_spool) == 1
        assert container.usage_log.shipped_through("2d" * 16) == 0

    def test_a_removed_spool_s_rows_never_store_again(self, container: Container) -> None:
        model_id, owner = _model(container)
        rows = [(5, _generated(model_id, owner, 1, "a"))]
        container.usage.ship_measured(SPOOL, rows)
        container.usage.retire_spool(SPOOL)
        # A second shipper that read the rows before the file went still holds a copy.
        assert container.usage.ship_measured(SPOOL, [*rows, (6, _generated(model_id, owner, 1,
                                                                              "b"))]) == 0
        assert stored_request_ids(container) == {"a0": 1}

    def test_a_retirement_waits_for_a_shipment_in_flight(self, container: Container) -> None:
        # Holding the lock every shipment takes: the retirement must wait for it, so a
        # shipment reads the mark wholly before or wholly after it.
        with usage_writes_blocked(container):
            retiring = threading.Thread(target=container.usage.retire_spool, args=(SPOOL,))
            retiring.start()
            retiring.join(0.5)
            assert retiring.is_alive()
            assert shipment_marks(container) == {}
        retiring.join(10)
        assert set(shipment_marks(container)) == {SPOOL}

    def test_a_retired_mark_is_deleted_a_week_later_and_live_marks_kept(
        self, container: Container
    ) -> None:
        model_id, owner = _model(container)
        live, later = "1e" * 16, "2d" * 16
        container.usage.ship_measured(SPOOL, [(5, _generated(model_id, owner, 1, "a"))])
        container.usage.ship_measured(live, [(2, _generated(model_id, owner, 1, "b"))])
        removed = int(time.time())
        container.usage.retire_spool(SPOOL, removed)
        container.usage.retire_spool(later, removed + RETIRED_KEPT_SECONDS)  # never shipped
        assert shipment_marks(container) == {
            SPOOL: RETIRED_MARK + removed, live: 2,
            later: RETIRED_MARK + removed + RETIRED_KEPT_SECONDS}
        container.usage.retire_spool(later, removed + RETIRED_KEPT_SECONDS + 1)
        assert shipment_marks(container) == {
            live: 2, later: RETIRED_MARK + removed + RETIRED_KEPT_SECONDS + 1}


    def test_a_retirement_is_timed_by_the_event_store_s_clock(
        self, container: Container, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # This host's clock a day ahead: PostgreSQL's clock (shared by every host) times the
        # retirement; the embedded store lives on this host, whose clock is its clock.
        skewed = int(time.time()) + 86_400
        monkeypatch.setattr(time, "time", lambda: float(skewed))
        container.usage.retire_spool(SPOOL)
        removed = shipment_marks(container)[SPOOL] - RETIRED_MARK
        if container.settings.backend == "postgres":
            assert skewed - 86_400 - 60 <= removed <= skewed - 86_400 + 60
        else:
            assert removed == skewed


def test_batched_calls_project_exactly_like_the_same_calls_as_single_events(
    container: Container,
) -> None:
    model_id, owner = _model(container)
    twin, twin_owner = _model(container)
    start = datetime.now(UTC) - timedelta(hours=3)
    calls = [metered(model_id, owner, f"c{i}", generated_id=True,
                     occurred_at=start + timedelta(minutes=15 * i), response_time_ms=0.5 + i,
                     success=i % 3 != 0, rejected=i % 7 == 0, api_key_id=f"{uuid.UUID(int=i % 2)}",
                     model_version=1 + i % 2)
             for i in range(12)]
    container.usage.ship_measured(SPOOL, [(1, calls)])
    # The twin model gets the same calls, each an event of its own (named request ids).
    singles = [MeteredUsage(**{**{f: getattr(c, f) for f in c.__struct_fields__},
                               "model_id": twin, "owner_id": twin_owner, "generated_id": False})
               for c in calls]
    container.usage.ship_measured("3c" * 16, [(1, singles)])
    container.projector.catch_up("usage")
    compared = []
    for table, rows in dump(container.store, "usage").items():
        mine = [_without(row, model_id, owner) for row in rows if _names(row, model_id, owner)]
        twins = [_without(row, twin, twin_owner) for row in rows if _names(row, twin, twin_owner)]
        assert mine == twins, table
        compared += [table] if mine else []
    assert len(compared) >= 6, compared  # hourly, daily and totals of the model, owner, version
    assert container.models.get(owner, model_id).usage.requests == 12 - 2  # 2 rejected
    assert container.usage.measured_refused == 0


def _names(row: tuple[object, ...], model_id: uuid.UUID, owner: uuid.UUID) -> bool:
    return any(str(value) in {str(model_id), str(owner)} for value in row)


def _without(row: tuple[object, ...], model_id: uuid.UUID, owner: uuid.UUID) -> tuple[object, ...]:
    return tuple(None if str(value) in {str(model_id), str(owner)} else value for value in row)
