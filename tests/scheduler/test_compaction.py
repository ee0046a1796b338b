"""Usage compaction, on SQLite and PostgreSQL: lossless, exactly once, idempotent, bounded."""

from __future__ import annotations

import dataclasses
import random
import threading
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import msgspec
import pytest

from domain.usage import METERED_SENDER, PredictionUsage, hour_of
from domain.usage_batch import as_events, call_id
from domain.usage_rollup import UsageRollup, epoch_us, key_counts_of, roll_up
from domain.usage_stats import UsageStats
from eventstore.mapper import state_fields
from projections.store.base import NEXT
from scheduler import archive
from scheduler.compaction import MIN_CHUNK_ROWS, RAW_TOPIC, compact_usage
from tests.helpers import dump
from tests.scheduler.usage_fixtures import (
    NOW,
    Models,
    batch,
    metered_calls,
    old_batches,
    old_usage,
    register_models,
    store,
    usage,
    usage_tables,
)

if TYPE_CHECKING:
    from services.container import Container

RETENTION = timedelta(days=30)
ROLLUP_TOPIC = "domain.usage_rollup:UsageRollup.Recorded"


def _topics(container: Container) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in container.usage_log.recorder.select_notifications(1, 10**9):
        counts[n.topic] = counts.get(n.topic, 0) + 1
    return counts


@pytest.fixture
def models(container: Container) -> Models:
    return register_models(container, 4)


# Callers of metered usage: two API keys and a login token (no key).
KEY_A, KEY_B = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
CALLERS = (KEY_A, KEY_B, "")


def called_by(
    events: list[PredictionUsage.Recorded], callers: tuple[str, ...] = CALLERS
) -> list[PredictionUsage.Recorded]:
    """The events as if metered, each called in turn by one of ``callers``."""
    return [
        # The library makes event classes dataclasses at run time; mypy sees only its base.
        dataclasses.replace(e, api_key_id=callers[i % len(callers)])  # type: ignore[call-arg]
        for i, e in enumerate(events)
    ]


def _rollups(container: Container) -> list[UsageRollup.Recorded]:
    mapper = container.usage_log.mapper
    notifications = container.usage_log.recorder.select_notifications(
        1, 10**9, topics=[ROLLUP_TOPIC]
    )
    return [cast("UsageRollup.Recorded", mapper.to_domain_event(n)) for n in notifications]


def test_statistics_are_equal_before_after_compaction_and_after_a_rebuild(
    container: Container, models: Models
) -> None:
    container.usage_log.record(old_usage(models, 3_000, days_ago=(70, 31)))
    container.usage_log.record(old_usage(models, 400, days_ago=(3, 0), prefix="new"))
    container.projector.catch_up_all()
    before = usage_tables(container)

    summary = compact_usage(container, older_than=RETENTION, chunk_size=1_000)
    container.projector.catch_up_all()
    after = usage_tables(container)
    container.projector.rebuild("usage")

    assert summary.events == 3_000
    assert summary.chunks >= 3
    assert after == before
    assert usage_tables(container) == before


def test_only_usage_older_than_the_retention_is_replaced_by_one_rollup_per_model_hour(
    container: Container, models: Models
) -> None:
    container.usage_log.record(old_usage(models, 500, days_ago=(40, 31)))
    container.usage_log.record(old_usage(models, 200, days_ago=(29, 0), prefix="new"))
    container.projector.catch_up_all()

    summary = compact_usage(container, older_than=RETENTION)

    topics = _topics(container)
    assert topics[RAW_TOPIC] == 200
    assert topics[ROLLUP_TOPIC] == len(summary.hours) == summary.rollups_written
    assert summary.models == {m for m, _ in models}


def test_late_usage_for_a_compacted_hour_is_counted_once_and_merged_into_its_rollup(
    container: Container, models: Models
) -> None:
    rng = random.Random(7)
    hour_start = (NOW - timedelta(days=45)).replace(minute=0, second=0)
    container.usage_log.record([usage(models[0], f"a{i}", hour_start, rng) for i in range(20)])
    container.projector.catch_up_all()
    compact_usage(container, older_than=RETENTION)
    late = [
        usage(
            models[0],
            f"late{i}",
            hour_start + timedelta(minutes=30),
            rng,
            recorded_at=NOW - timedelta(days=31),
        )
        for i in range(5)
    ]
    assert len(container.usage_log.record(late)) == 5
    container.projector.catch_up_all()
    counted = usage_tables(container)

    second = compact_usage(container, older_than=RETENTION)
    container.projector.catch_up_all()

    assert second.events == 5
    assert second.rollups_merged == 1
    assert _topics(container) == {ROLLUP_TOPIC: 1}
    assert usage_tables(container) == counted
    container.projector.rebuild("usage")
    assert usage_tables(container) == counted
    rows = counted["usage_model_totals"]
    assert sum(row[2] + row[5] for row in rows) == 25  # requests + rejected


def test_a_retried_request_of_compacted_usage_is_still_a_duplicate(
    container: Container, models: Models
) -> None:
    events = old_usage(models, 50, days_ago=(40, 35))
    container.usage_log.record(events)
    container.projector.catch_up_all()
    compact_usage(container, older_than=RETENTION)

    assert container.usage_log.record(events[:10]) == set()
    assert RAW_TOPIC not in _topics(container)


def test_only_events_every_usage_projection_has_processed_are_compacted(
    container: Container, models: Models
) -> None:
    container.usage_log.record(old_usage(models, 300, days_ago=(40, 35)))
    container.projector.catch_up("models")
    container.projector.batch_size = 100
    with container.store.write("usage") as cur:
        container.projector.process_batch(cur, container.projector.projections["usage"])

    first = compact_usage(container, older_than=RETENTION)
    assert first.events == 100
    assert first.through == 100 + 0  # nothing beyond the projection's position

    with container.store.write("usage" + NEXT) as cur:  # a rebuild has just started
        container.store.create_tables(cur, "usage", NEXT)
        container.store.set_position(cur, "usage" + NEXT, 0)
    container.projector.catch_up("usage")
    assert compact_usage(container, older_than=RETENTION).events == 0


def test_compacting_the_newest_event_keeps_the_log_head_so_new_events_are_not_skipped(
    container: Container, models: Models
) -> None:
    container.usage_log.record(old_usage(models, 30, days_ago=(40, 35)))
    container.projector.catch_up_all()
    head = container.usage_log.recorder.max_notification_id()

    compact_usage(container, older_than=RETENTION)
    assert container.usage_log.recorder.max_notification_id() == head
    container.usage_log.record(old_usage(models, 1, days_ago=(1, 0), prefix="fresh"))
    container.projector.catch_up_all()

    totals = usage_tables(container)["usage_owner_totals"]
    assert sum(row[1] + row[4] for row in totals) == 31  # requests + rejected


def test_a_dry_run_changes_nothing_and_reports_what_a_run_would_compact(
    container: Container, models: Models
) -> None:
    container.usage_log.record(old_usage(models, 200, days_ago=(40, 35)))
    container.projector.catch_up_all()
    topics = _topics(container)

    dry = compact_usage(container, older_than=RETENTION, dry_run=True)

    assert _topics(container) == topics
    assert not archive.days(archive.archive_dir(container.settings.data_dir))
    real = compact_usage(container, older_than=RETENTION)
    assert (dry.events, dry.models, dry.hours) == (real.events, real.models, real.hours)
    assert dry.bytes_reclaimed == real.bytes_reclaimed > 0


def test_a_second_run_in_a_row_finds_nothing_to_do(container: Container, models: Models) -> None:
    container.usage_log.record(old_usage(models, 200, days_ago=(40, 35)))
    container.projector.catch_up_all()
    compact_usage(container, older_than=RETENTION)
    before = _topics(container)

    again = compact_usage(container, older_than=RETENTION)

    assert (again.events, again.rollups_written) == (0, 0)
    assert _topics(container) == before


def test_the_archive_holds_every_compacted_event_once(container: Container, models: Models) -> None:
    events = old_usage(models, 300, days_ago=(40, 35))
    container.usage_log.record(events)
    container.projector.catch_up_all()

    compact_usage(container, older_than=RETENTION, chunk_size=100)

    records = list(archive.read_archive(archive.archive_dir(container.settings.data_dir)))
    assert sorted(r["request_id"] for r in records) == sorted(e.request_id for e in events)
    one = next(r for r in records if r["request_id"] == events[0].request_id)
    assert one["model_id"] == str(events[0].model_id)
    assert one["response_time_ms"] == events[0].response_time_ms


def test_archiving_can_be_turned_off(container: Container, models: Models) -> None:
    container.usage_log.record(old_usage(models, 20, days_ago=(40, 35)))
    container.projector.catch_up_all()
    compact_usage(container, older_than=RETENTION, archive_enabled=False)
    assert not archive.days(archive.archive_dir(container.settings.data_dir))


def test_ingest_goes_on_while_compaction_runs_and_is_never_held_between_chunks(
    container: Container, models: Models
) -> None:
    """Compaction locks one chunk at a time: usage recorded while it runs is never held
    until the run ends, and none of it is lost or counted twice."""
    container.usage_log.record(old_usage(models, 8_000, days_ago=(60, 31)))
    container.projector.catch_up_all()
    recorded: list[int] = []  # events each ingest call stored
    done = threading.Event()
    rng = random.Random(3)

    def ingest(prefix: str) -> None:
        events = [usage(models[0], f"{prefix}-{i}", NOW, rng) for i in range(20)]
        recorded.append(len(container.usage_log.record(events)))

    def gateway() -> None:  # flushing every 10 ms, chunks or no chunks
        batch = 0
        while not done.is_set():
            ingest(f"live{batch}")
            batch += 1
            done.wait(0.01)

    between: list[bool] = []  # whether each ingest between two chunks was stored

    def between_chunks(_after: int, _through: int) -> None:
        # A lock held across chunks would keep this ingest waiting until the run ends (or
        # failing on a busy database); the join's bound only turns such a hang into a failure.
        before = len(recorded)
        caller = threading.Thread(target=ingest, args=(f"between{len(between)}",))
        caller.start()
        caller.join(timeout=60)
        between.append(not caller.is_alive() and len(recorded) > before)

    thread = threading.Thread(target=gateway)
    thread.start()
    try:
        summary = compact_usage(container, older_than=RETENTION, chunk_size=500,
                                progress=between_chunks)
    finally:
        done.set()
        thread.join()

    assert summary.events == 8_000
    assert summary.chunks >= 16
    assert len(between) == summary.chunks
    assert all(between)
    assert set(recorded) == {20}
    container.projector.catch_up_all()
    totals = usage_tables(container)["usage_owner_totals"]
    assert sum(row[1] + row[4] for row in totals) == 8_000 + 20 * len(recorded)


def test_rollups_carry_the_model_hour_and_the_raw_event_count(
    container: Container, models: Models
) -> None:
    rng = random.Random(5)
    hour_start = (NOW - timedelta(days=50)).replace(minute=0, second=0)
    container.usage_log.record([usage(models[1], f"h{i}", hour_start, rng) for i in range(12)])
    container.projector.catch_up_all()
    compact_usage(container, older_than=RETENTION)

    (n,) = container.usage_log.recorder.select_notifications(1, 10)
    rollup = container.usage_log.mapper.to_domain_event(n)
    assert isinstance(rollup, UsageRollup.Recorded)
    assert (rollup.model_id, rollup.raw_events) == (models[1][0], 12)
    assert rollup.hour * 3600 == int(hour_start.timestamp())


def test_usage_left_between_compacted_events_survives_and_a_later_run_compacts_it(
    container: Container, models: Models
) -> None:
    """Compacted events need not be contiguous: what lies between them (raw or roll-up) stays."""
    container.usage_log.record(old_usage(models, 600, days_ago=(60, 40)))
    container.projector.catch_up_all()
    before = usage_tables(container)

    first = compact_usage(container, older_than=timedelta(days=50))
    container.projector.catch_up_all()
    assert 0 < first.events < 600
    assert _topics(container)[RAW_TOPIC] == 600 - first.events
    assert usage_tables(container) == before

    second = compact_usage(container, older_than=RETENTION)
    container.projector.catch_up_all()
    assert first.events + second.events == 600
    assert RAW_TOPIC not in _topics(container)
    assert usage_tables(container) == before
    container.projector.rebuild("usage")
    assert usage_tables(container) == before


def test_archive_records_hold_every_field_of_the_usage_event(
    container: Container, models: Models
) -> None:
    events = old_usage(models, 50, days_ago=(40, 35))
    container.usage_log.record(events)
    container.projector.catch_up_all()
    stored = {
        n.originator_id: n.id
        for n in container.usage_log.recorder.select_notifications(1, 10**9)
    }

    compact_usage(container, older_than=RETENTION)

    records = archive.read_archive(archive.archive_dir(container.settings.data_dir))
    found = {r["id"]: r for r in records}
    expected = {
        str(e.originator_id): msgspec.json.decode(
            msgspec.json.encode(archive._line(stored[e.originator_id], e))
        )
        for e in events
    }
    assert found == expected


def test_compaction_pauses_between_chunks_only_while_new_usage_arrives(
    container: Container, models: Models
) -> None:
    container.usage_log.record(old_usage(models, 2_000, days_ago=(60, 31)))
    container.projector.catch_up_all()
    alone = compact_usage(container, older_than=RETENTION, chunk_size=500, max_chunks=2)
    assert alone.paused_s == 0

    rng = random.Random(4)
    arrivals = iter(range(10**6))

    def one_more_arrival(position: int, bound: int) -> None:
        container.usage_log.record([usage(models[0], f"live{next(arrivals)}", NOW, rng)])

    busy = compact_usage(container, older_than=RETENTION, chunk_size=500, progress=one_more_arrival)
    assert busy.events == 1_000
    assert busy.paused_s > 0


def _chunk_sizes(positions: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *positions], positions, strict=False)]


def test_while_new_usage_arrives_every_chunk_is_a_short_one(
    container: Container, models: Models
) -> None:
    """Each chunk is a burst of work on the CPUs the requests need: short ones while busy."""
    container.usage_log.record(old_usage(models, 1_000, days_ago=(60, 31)))
    container.projector.catch_up_all()
    rng = random.Random(5)
    arrivals = iter(range(10**6))
    positions: list[int] = []

    def one_more_arrival(position: int, bound: int) -> None:
        positions.append(position)
        container.usage_log.record([usage(models[0], f"live{next(arrivals)}", NOW, rng)])

    busy = compact_usage(
        container, older_than=RETENTION, chunk_size=500, busy_chunk_size=100,
        ingest_yield=0.5, progress=one_more_arrival,
    )
    assert busy.events == 1_000
    assert _chunk_sizes(positions) == [100] * 10
    assert busy.paused_s > 0


def test_an_idle_service_gets_full_chunks_after_a_short_first_one(
    container: Container, models: Models
) -> None:
    """Until the first chunk shows that no usage arrives, the service counts as busy."""
    container.usage_log.record(old_usage(models, 1_000, days_ago=(60, 31)))
    container.projector.catch_up_all()
    positions: list[int] = []

    idle = compact_usage(
        container, older_than=RETENTION, chunk_size=500, busy_chunk_size=100,
        progress=lambda position, _bound: positions.append(position),
    )
    assert idle.events == 1_000
    assert _chunk_sizes(positions) == [100, 500, 400]
    assert idle.paused_s == 0


def test_without_yielding_every_chunk_is_a_full_one(container: Container, models: Models) -> None:
    container.usage_log.record(old_usage(models, 1_000, days_ago=(60, 31)))
    container.projector.catch_up_all()
    positions: list[int] = []

    compact_usage(
        container, older_than=RETENTION, chunk_size=500, busy_chunk_size=100, ingest_yield=0,
        progress=lambda position, _bound: positions.append(position),
    )
    assert _chunk_sizes(positions) == [500, 500]


def test_a_rebuild_starting_between_chunks_stops_compaction_at_its_position(
    container: Container, models: Models
) -> None:
    """The chunk read ahead under the old bound must not be compacted past the rebuild's 0."""
    container.usage_log.record(old_usage(models, 300, days_ago=(40, 35)))
    container.projector.catch_up_all()
    compacted_before_rebuild: list[int] = []

    def start_rebuild_after_first_chunk(position: int, bound: int) -> None:
        if not compacted_before_rebuild:
            compacted_before_rebuild.append(position)
            with container.store.write("usage" + NEXT) as cur:
                container.store.create_tables(cur, "usage", NEXT)
                container.store.set_position(cur, "usage" + NEXT, 0)

    summary = compact_usage(
        container, older_than=RETENTION, chunk_size=50, progress=start_rebuild_after_first_chunk
    )
    assert summary.events == 50  # the first chunk only: nothing above the rebuild's position 0
    assert _topics(container)[RAW_TOPIC] == 250


def test_api_key_usage_is_equal_before_after_compaction_and_after_a_rebuild(
    container: Container, models: Models
) -> None:
    container.usage_log.record(called_by(old_usage(models, 900, days_ago=(40, 31))))
    container.usage_log.record(called_by(old_usage(models, 90, days_ago=(3, 0), prefix="new")))
    container.projector.catch_up_all()
    before = dump(container.store, "usage")
    assert len(before["api_key_usage"]) == 2

    summary = compact_usage(container, older_than=RETENTION, chunk_size=200)
    container.projector.catch_up_all()
    after = dump(container.store, "usage")
    container.projector.rebuild("usage")

    assert summary.events == 900
    assert after == before
    assert dump(container.store, "usage") == before


def test_a_rollup_carries_each_keys_requests_and_latest_use_merged_with_late_usage(
    container: Container, models: Models
) -> None:
    rng = random.Random(11)
    hour_start = (NOW - timedelta(days=45)).replace(minute=0, second=0)
    early = called_by(
        [usage(models[2], f"e{i}", hour_start + timedelta(minutes=i), rng) for i in range(9)]
    )
    container.usage_log.record(early)
    container.projector.catch_up_all()
    compact_usage(container, older_than=RETENTION)
    late = called_by(
        [usage(models[2], f"late{i}", hour_start + timedelta(minutes=30 + i), rng,
               recorded_at=NOW - timedelta(days=31)) for i in range(4)],
        callers=(KEY_B, ""),
    )
    container.usage_log.record(late)
    container.projector.catch_up_all()
    counted = dump(container.store, "usage")

    compact_usage(container, older_than=RETENTION)

    (rollup,) = _rollups(container)
    assert rollup.api_keys == {
        KEY_A: (3, epoch_us(hour_start + timedelta(minutes=6))),
        KEY_B: (3 + 2, epoch_us(hour_start + timedelta(minutes=32))),
    }
    container.projector.rebuild("usage")
    assert dump(container.store, "usage") == counted


def test_a_rollup_stored_before_api_keys_decodes_folds_and_merges_late_keyed_usage(
    container: Container, models: Models
) -> None:
    """Roll-ups written by earlier compactions lack ``api_keys`` (appended last): they read as
    counting no key, and a later compaction of the hour adds the late usage's keys."""
    rng = random.Random(12)
    hour_start = (NOW - timedelta(days=50)).replace(minute=0, second=0)
    model_id, owner_id = models[3]
    replaced = [usage(models[3], f"o{i}", hour_start + timedelta(minutes=i), rng) for i in range(7)]
    current = roll_up(model_id=model_id, owner_id=owner_id, hour=hour_of(hour_start),
                      stats=UsageStats.of_requests(replaced), raw_events=7,
                      api_keys=key_counts_of(called_by(replaced)), now=NOW)
    stored = container.usage_log.mapper.to_stored_event(current)
    assert [f.name for f in state_fields(ROLLUP_TOPIC)][-2:] == ["api_keys", "model_version"]
    old_layout = msgspec.msgpack.encode(msgspec.msgpack.decode(stored.state)[:-2])
    container.usage_log.recorder.insert_events([dataclasses.replace(stored, state=old_layout)])

    (old,) = _rollups(container)
    assert vars(old) == {**vars(current), "api_keys": {}}
    container.projector.catch_up_all()
    tables = dump(container.store, "usage")
    assert [(row[2], row[5]) for row in tables["usage_model_totals"]] == [  # requests, rejected
        (sum(not e.rejected for e in replaced), sum(e.rejected for e in replaced))
    ]
    assert tables["api_key_usage"] == []

    late = called_by([usage(models[3], f"late{i}", hour_start + timedelta(minutes=40 + i), rng,
                            recorded_at=NOW - timedelta(days=31)) for i in range(3)])
    container.usage_log.record(late)
    container.projector.catch_up_all()
    counted = dump(container.store, "usage")
    assert compact_usage(container, older_than=RETENTION).rollups_merged == 1

    (merged,) = _rollups(container)
    assert merged.api_keys == key_counts_of(late)
    assert merged.raw_events == 7 + 3
    container.projector.rebuild("usage")
    assert dump(container.store, "usage") == counted


# --- batches: ``UsageBatch.Recorded`` compacts like the raw events of its calls ----------------

BATCH_TOPIC = "domain.usage_batch:UsageBatch.Recorded"


def _renamed(tables: dict[str, list[tuple[Any, ...]]], renames: dict[str, str]) -> dict[str, Any]:
    """Per table, the rows holding a value to rename (renamed), and the rows holding a new
    name: equal when the renamed model, owner and key have the same figures as the others."""
    pairs = {}
    for name, rows in tables.items():
        texts = [{v for v in row if isinstance(v, str)} for row in rows]
        old = [
            tuple(renames.get(v, v) if isinstance(v, str) else v for v in row)
            for row, found in zip(rows, texts, strict=True)
            if found & renames.keys()
        ]
        new = [row for row, found in zip(rows, texts, strict=True) if found & {*renames.values()}]
        pairs[name] = (sorted(old, key=repr), sorted(new, key=repr))
    return pairs


def _rollup_of(container: Container, model_id: uuid.UUID) -> UsageRollup.Recorded:
    (rollup,) = [r for r in _rollups(container) if r.model_id == model_id]
    return rollup


def test_a_batch_of_calls_compacts_like_the_same_calls_as_raw_events(
    container: Container, models: Models
) -> None:
    """Model 0's calls are stored as batches, model 1's identical calls as raw events (with
    key B for key A): their roll-ups and rows are equal, before, after and after a rebuild."""
    rng = random.Random(21)
    start = (NOW - timedelta(days=40)).replace(minute=0, second=0)
    calls = metered_calls(300, start, rng, keys=(KEY_A, ""))
    batches = [batch(models[0], calls[i : i + 50], model_version=2) for i in range(0, 300, 50)]
    as_b = [c._replace(api_key_id=KEY_B if c.api_key_id else "") for c in calls]
    raw = as_events(batch(models[1], as_b, model_version=2))
    for i in range(6):  # interleaved in the log
        store(container, [batches[i], *raw[50 * i : 50 * i + 50]])
    container.projector.catch_up_all()
    before = usage_tables(container)
    renames = {str(models[1][0]): str(models[0][0]), str(models[1][1]): str(models[0][1]),
               KEY_B: KEY_A}
    assert all(old and old == new for old, new in _renamed(before, renames).values())

    summary = compact_usage(container, older_than=RETENTION, chunk_size=70)
    container.projector.catch_up_all()

    assert (summary.events, summary.batches) == (600, 6)
    assert _topics(container) == {ROLLUP_TOPIC: 2}
    of_batches, of_raw = _rollup_of(container, models[0][0]), _rollup_of(container, models[1][0])
    assert of_batches.raw_events == 300
    assert of_batches.api_keys == {KEY_A: of_raw.api_keys[KEY_B]}
    own = {"originator_id", "timestamp", "model_id", "owner_id", "api_keys"}
    assert {k: v for k, v in vars(of_batches).items() if k not in own} == {
        k: v for k, v in vars(of_raw).items() if k not in own
    }
    assert usage_tables(container) == before
    container.projector.rebuild("usage")
    assert usage_tables(container) == before


def test_statistics_of_raw_events_and_batches_are_equal_after_compaction_and_a_rebuild(
    container: Container, models: Models
) -> None:
    store(container, old_batches(models, 40, calls=30, days_ago=(70, 31)))
    container.usage_log.record(old_usage(models, 1_000, days_ago=(70, 31)))
    store(container, old_batches(models, 40, calls=30, days_ago=(70, 31), seed=2, prefix="c"))
    store(container, old_batches(models, 10, calls=30, days_ago=(3, 0), seed=3, prefix="new"))
    container.projector.catch_up_all()
    before = dump(container.store, "usage")

    summary = compact_usage(container, older_than=RETENTION, chunk_size=300)
    container.projector.catch_up_all()
    after = dump(container.store, "usage")
    container.projector.rebuild("usage")

    assert (summary.events, summary.batches) == (1_000 + 80 * 30, 80)
    assert _topics(container)[BATCH_TOPIC] == 10
    assert after == before
    assert dump(container.store, "usage") == before


def test_raw_events_and_batches_of_one_hour_make_one_rollup_at_the_newest_id(
    container: Container, models: Models
) -> None:
    rng = random.Random(22)
    start = (NOW - timedelta(days=45)).replace(minute=0, second=0)
    singles = [usage(models[2], f"s{i}", start + timedelta(minutes=i), rng) for i in range(5)]
    store(container, singles[:2])
    store(container, [batch(models[2], metered_calls(10, start, rng, prefix="x"))])
    store(container, singles[2:])
    store(container, [batch(models[2], metered_calls(10, start, rng, prefix="y"))])
    head = container.usage_log.recorder.max_notification_id()
    container.projector.catch_up_all()
    before = usage_tables(container)
    dry = compact_usage(container, older_than=RETENTION, dry_run=True)

    summary = compact_usage(container, older_than=RETENTION)

    assert (summary.events, summary.batches, summary.rollups_written) == (25, 2, 1)
    assert (dry.events, dry.batches, dry.bytes_reclaimed) == (25, 2, summary.bytes_reclaimed)
    (n,) = container.usage_log.recorder.select_notifications(1, 10**9)
    assert (n.id, n.topic) == (head, ROLLUP_TOPIC)
    rollup = cast("UsageRollup.Recorded", container.usage_log.mapper.to_domain_event(n))
    assert rollup.raw_events == 25
    container.projector.catch_up_all()
    assert usage_tables(container) == before
    container.projector.rebuild("usage")
    assert usage_tables(container) == before


def test_a_batch_is_compacted_once_its_latest_call_and_its_recording_are_older_than_the_cutoff(
    container: Container, models: Models
) -> None:
    rng = random.Random(23)
    hour = (NOW - timedelta(days=40)).replace(minute=0, second=0)
    at = {minute: hour + timedelta(minutes=minute) for minute in (5, 10, 31, 50)}
    calls = [
        c._replace(occurred_at=at[minute])
        for c, minute in zip(metered_calls(6, hour, rng), (5, 5, 31, 5, 5, 5), strict=True)
    ]
    # Recorded before its last call occurred (within the clock skew ingest allows).
    skewed = batch(models[0], calls[:3], recorded_at=at[10])
    recent = batch(models[0], calls[3:], recorded_at=at[50])
    store(container, [skewed, recent])
    container.projector.catch_up_all()
    counted = usage_tables(container)

    cutoff_at_30 = at[10] + timedelta(minutes=20) + RETENTION
    first = compact_usage(container, older_than=RETENTION, now=cutoff_at_30)
    assert (first.events, first.batches) == (0, 0)
    assert _topics(container) == {BATCH_TOPIC: 2}
    cutoff_at_45 = at[10] + timedelta(minutes=35) + RETENTION
    second = compact_usage(container, older_than=RETENTION, now=cutoff_at_45)
    assert (second.events, second.batches) == (3, 1)  # the recent batch is recorded at :50
    third = compact_usage(container, older_than=RETENTION)
    assert (third.events, third.rollups_merged) == (3, 1)

    assert _topics(container) == {ROLLUP_TOPIC: 1}
    assert _rollup_of(container, models[0][0]).raw_events == 6
    container.projector.catch_up_all()
    assert usage_tables(container) == counted
    container.projector.rebuild("usage")
    assert usage_tables(container) == counted


def test_the_archive_names_each_call_of_a_batch_by_its_call_id_with_a_raw_events_fields(
    container: Container, models: Models
) -> None:
    """A reader cannot tell how a call was stored: its line is its raw event's, key for key."""
    batches = old_batches(models, 6, calls=20, days_ago=(40, 35))
    singles = old_usage(models, 30, days_ago=(40, 35))
    store(container, [*batches[:3], *singles, *batches[3:]])
    container.projector.catch_up_all()
    stored = {
        n.originator_id: n.id
        for n in container.usage_log.recorder.select_notifications(1, 10**9)
    }

    compact_usage(container, older_than=RETENTION, chunk_size=50)

    directory = archive.archive_dir(container.settings.data_dir)
    found = {r["id"]: r for r in archive.read_archive(directory)}
    expected = {
        str(e.originator_id): msgspec.json.decode(
            msgspec.json.encode(archive._line(stored[b.originator_id], e))
        )
        for b in batches
        for e in as_events(b)
    } | {
        str(e.originator_id): msgspec.json.decode(
            msgspec.json.encode(archive._line(stored[e.originator_id], e))
        )
        for e in singles
    }
    assert found.keys() == expected.keys()
    assert {str(call_id(b, i)) for b in batches for i in range(len(b.calls))} <= found.keys()
    assert [list(found[i].items()) for i in expected] == [  # the same keys in the same order
        list(r.items()) for r in expected.values()
    ]
    assert {r["sender"] for r in found.values() if r["request_id"].startswith("b")} == {
        METERED_SENDER
    }


def test_a_chunk_holds_at_most_its_size_in_calls_and_a_larger_batch_is_a_chunk_of_its_own(
    container: Container, models: Models
) -> None:
    store(container, old_batches(models, 20, calls=50, days_ago=(40, 35)))
    store(container, old_batches(models, 1, calls=300, days_ago=(40, 35), prefix="big"))
    store(container, old_usage(models, 300, days_ago=(40, 35)))
    container.projector.catch_up_all()
    before = usage_tables(container)
    positions: list[int] = []

    summary = compact_usage(
        container, older_than=RETENTION, chunk_size=200, ingest_yield=0,
        progress=lambda position, _bound: positions.append(position),
    )

    assert (summary.events, summary.batches) == (20 * 50 + 300 + 300, 21)
    # Four batches of 50 calls, the batch of 300 alone, then raw events: first as many rows
    # as the last chunk's mix says (one), but at least MIN_CHUNK_ROWS, then full chunks again.
    assert _chunk_sizes(positions) == [
        4, 4, 4, 4, 4, 1, MIN_CHUNK_ROWS, 200, 300 - MIN_CHUNK_ROWS - 200]
    container.projector.catch_up_all()
    assert usage_tables(container) == before
