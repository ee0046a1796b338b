"""Property: for random streams of model and usage events, the incremental projection, a
rebuild from scratch and an independent recomputation from the raw events all agree
(counts, sums, min/max exactly; percentiles within the histogram's stated relative error;
each API key's requests and latest use exactly), and so do they once compaction has replaced
raw events by roll-ups, during the stream and after it: live, rebuilt, compacted-then-rebuilt.
"""

from __future__ import annotations

import math
import tempfile
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import latency
from domain.model import ModelStatus
from domain.usage import PredictionUsage, hour_of
from domain.usage_stats import to_micros
from modelledger.bootstrap import build
from projections.catalogue import PROJECTION_TABLES
from projections.usage import queries, windows
from projections.usage.figures import figures_from_row, figures_of
from projections.usage.rows import stats_of
from projections.usage.tables import STATS_COLUMNS, STATS_NAMES
from projections.usage.writer import _StatsCache
from scheduler.compaction import RAW_TOPIC, compact_usage
from services.models import Actor
from services.usage import MeteredUsage, UsageRecord, Writer
from tests.conftest import make_settings
from tests.helpers import T0, dump

usage_op = st.tuples(
    st.just("usage"),
    st.integers(0, 3),  # model index
    st.integers(0, 40),  # request id: small range, so retries happen
    st.floats(0, 5_000, allow_nan=False),  # response time ms
    st.booleans(),  # success
    st.integers(0, 72),  # hour offset
    st.integers(0, 10_000),  # bytes
)
CALLERS = 5  # how a metered call names its caller: ``key_texts``
metered_op = st.tuples(
    st.just("metered"),
    st.integers(0, 3),  # model index
    st.integers(0, 40),  # request id
    st.floats(0, 5_000, allow_nan=False),  # response time ms
    st.booleans(),  # success
    st.integers(0, 3),  # hour offset: few, so late usage for a compacted model-hour happens
    st.integers(0, CALLERS - 1),  # caller
    st.integers(1, 3),  # the model version that served
)
catch_up_op = st.tuples(st.just("catch_up"), st.sampled_from([1, 3, 50]))
# Compact what the projection has counted so far (after catching up: as the scheduled job
# usually finds it).
compact_op = st.tuples(st.just("compact"), st.booleans())
operation = st.one_of(
    usage_op, metered_op, st.tuples(st.just("deactivate"), st.integers(0, 3)), catch_up_op,
    compact_op,
)
# Long streams of mostly keyed usage, so that roll-ups are merged with late usage of their
# model-hour (rare in the short streams above).
compaction_stream = st.lists(
    st.one_of(metered_op, metered_op, usage_op, catch_up_op, compact_op), min_size=8, max_size=40
)


def exact_stats(events: list[PredictionUsage.Recorded]) -> dict[str, Any]:
    served = [e for e in events if not e.rejected]
    micros = sorted(to_micros(e.response_time_ms) for e in served)
    return {
        "requests": len(served),
        "successes": sum(e.success for e in served),
        "rejected": len(events) - len(served),
        "total_us": sum(micros),
        "min_us": micros[0] if micros else None,
        "max_us": micros[-1] if micros else None,
        "input_bytes": sum(e.input_bytes for e in served),
        "micros": micros,
    }


def raw_usage(container: Any) -> dict[uuid.UUID, PredictionUsage.Recorded]:
    """The raw usage events in the log now (compaction removes them), by id."""
    source = container.projector.sources["usage"]
    events = (source.mapper.to_domain_event(n) for n in source.recorder.select_notifications(
        1, 10**6, topics=[RAW_TOPIC]))
    return {e.originator_id: e for e in events}


def compact_all_counted(container: Any) -> int:
    """Compact every usage event the projection has counted; how many were replaced."""
    # Events are recorded now: a cutoff just ahead makes every one old enough.
    now = datetime.now(UTC) + timedelta(minutes=1)
    summary = compact_usage(
        container, older_than=timedelta(0), now=now, archive_enabled=False, ingest_yield=0
    )
    return summary.events


def key_texts(key_ids: list[uuid.UUID]) -> tuple[str, ...]:
    """Three keys, one of them also spelled in capitals (the same key), and a login token (no
    key: counted for none)."""
    return (*map(str, key_ids), str(key_ids[2]).upper(), "")


def check_key_usage(
    container: Any, key_ids: list[uuid.UUID], raw: list[PredictionUsage.Recorded]
) -> None:
    """``api_key_usage`` holds each key's requests and latest use among the raw events."""
    uses: dict[uuid.UUID, list[datetime]] = defaultdict(list)
    for e in raw:
        if e.api_key_id:
            uses[uuid.UUID(e.api_key_id)].append(e.occurred_at)
    with container.store.read() as cur:
        cur.execute("SELECT api_key_id, requests, last_used_at FROM api_key_usage")
        rows = [container.store.row_from_db(row, ["uuid", "int", "ts"]) for row in cur.fetchall()]
    # On PostgreSQL, the examples share a schema: only this stream's keys are its own.
    assert {key_id: (n, last) for key_id, n, last in rows if key_id in key_ids} == {
        key_id: (len(times), max(times)) for key_id, times in uses.items() if key_id in key_ids
    }


def check_against_raw(
    container: Any,
    owner: uuid.UUID,
    model_ids: list[uuid.UUID],
    key_ids: list[uuid.UUID],
    raw: list[PredictionUsage.Recorded],
) -> None:
    check_key_usage(container, key_ids, raw)
    by_model: dict[uuid.UUID, list[PredictionUsage.Recorded]] = defaultdict(list)
    by_hour: dict[tuple[uuid.UUID, int], list[PredictionUsage.Recorded]] = defaultdict(list)
    for e in raw:
        by_model[e.model_id].append(e)
        by_hour[(e.model_id, hour_of(e.occurred_at))].append(e)
    for model_id in model_ids:
        expected = exact_stats(by_model[model_id])
        got = container.models.get(owner, model_id).usage
        assert (got.requests, got.successes, got.rejected, got.total_us, got.min_us, got.max_us,
                got.input_bytes) == (expected["requests"], expected["successes"],
                                     expected["rejected"], expected["total_us"],
                                     expected["min_us"], expected["max_us"],
                                     expected["input_bytes"])
        shown = (got.p50_ms, got.p95_ms, got.p99_ms)
        if got.requests and got.min_ms == got.max_ms:  # equal times are shown exactly
            assert shown == (got.min_ms, got.min_ms, got.min_ms)
        elif got.requests:
            assert shown[0] <= shown[1] <= shown[2]
        for q, estimate in zip((0.5, 0.95, 0.99), shown, strict=True):
            micros = expected["micros"]
            if not micros:
                assert estimate is None
                continue
            exact = micros[max(1, math.ceil(q * len(micros))) - 1] / 1000
            assert estimate is not None
            assert abs(estimate - exact) <= latency.RELATIVE_ERROR * exact + 1e-9
        hours = queries.usage_rows(container.store, "model", model_id, unit=1, start=0, end=10**7)
        assert {h: s.requests for h, s in hours} == {
            h: exact_stats(evs)["requests"] for (m, h), evs in by_hour.items() if m == model_id
        }
        days = queries.usage_rows(container.store, "model", model_id, unit=24, start=0, end=10**6)
        assert {d: s.requests for d, s in days} == {
            d: sum(s.requests for h, s in hours if h // 24 == d)
            for d in {h // 24 for h, _ in hours}
        }
        check_versions(container, model_id, [e for e in raw if e.model_id == model_id])
        check_zoned_series(container, "model", model_id,
                           [e for e in raw if e.model_id == model_id])
        for version in (2, 3):
            check_zoned_series(container, "version", (model_id, version), [
                e for e in raw if e.model_id == model_id and e.model_version == version])
    check_zoned_series(container, "owner", owner, raw)
    check_stored_percentiles(container)


ZONES_WHOSE_DAYS_ARE_NOT_UTC_DAYS = ("Europe/Berlin", "America/New_York", "Asia/Tokyo",
                                     "Pacific/Kiritimati", "America/Adak")


def check_zoned_series(
    container: Any, scope: str, key: Any, raw: list[PredictionUsage.Recorded]
) -> None:
    """Day and week windows of zones whose days are not UTC days (read from day rows less
    or plus the hours at their edges) equal the merge of their hours, and count the raw
    events they hold."""
    for name in ZONES_WHOSE_DAYS_ARE_NOT_UTC_DAYS:
        for window in ("day", "week"):
            spans = windows.spans(window, windows.zone(name), T0 - timedelta(days=2),
                                  T0 + timedelta(days=5))
            series = queries.usage_series(container.store, scope, key, spans)
            hours = queries.usage_rows(container.store, scope, key, unit=1,
                                       start=spans[0].first_hour, end=spans[-1].end_hour)
            assert series == windows.bucketise(hours, spans)
            assert [b.figures.requests for b in series] == [
                sum(1 for e in raw if b.start <= e.occurred_at < b.end and not e.rejected)
                for b in series]


def check_versions(
    container: Any, model_id: uuid.UUID, raw: list[PredictionUsage.Recorded]
) -> None:
    """Each version's totals and hours equal a recomputation from the raw events it served."""
    by_version: dict[int, list[PredictionUsage.Recorded]] = defaultdict(list)
    for e in raw:
        by_version[e.model_version].append(e)
    totals = dict(queries.version_totals(container.store, model_id))
    assert set(totals) == set(by_version)
    shared = len(by_version) > 1  # version 1's extremes are then derived (``without``)
    for version, events in by_version.items():
        expected = exact_stats(events)
        got = totals[version]
        assert (got.requests, got.successes, got.rejected, got.total_us, got.input_bytes) == (
            expected["requests"], expected["successes"], expected["rejected"],
            expected["total_us"], expected["input_bytes"])
        for value, exact in ((got.min_us, expected["min_us"]), (got.max_us, expected["max_us"])):
            if version != 1 or not shared or exact is None:
                assert value == exact
            else:
                assert value is not None
                assert abs(value - exact) <= latency.RELATIVE_ERROR * exact + 1
        spans = windows.spans("hour", windows.zone("UTC"), T0 - timedelta(hours=1),
                              T0 + timedelta(hours=80))
        series = queries.usage_series(container.store, "version", (model_id, version), spans)
        per_hour: dict[datetime, int] = defaultdict(int)
        for e in events:
            per_hour[e.occurred_at.replace(minute=0, second=0, microsecond=0)] += not e.rejected
        assert {b.start: b.figures.requests for b in series if b.figures.requests} == {
            at: n for at, n in per_hour.items() if n}
        window = queries.version_window(container.store, model_id, version, 0, 10**7)
        assert (window.requests, window.failures, window.rejected) == (
            expected["requests"], expected["requests"] - expected["successes"],
            expected["rejected"])


def check_stored_percentiles(container: Any) -> None:
    """Every model's and version's row that stores percentile buckets holds its histogram's;
    the owners' rows and the model and owner totals store none (readers compute them)."""
    with container.store.read() as cur:
        for table in PROJECTION_TABLES["usage"]:
            if not set(STATS_NAMES) <= set(table.column_names):  # api_key_usage: no statistics
                continue
            cur.execute(f"SELECT {', '.join(STATS_NAMES)} FROM {table.name}")
            for row in cur.fetchall():
                values = container.store.row_from_db(row, [kind for _, kind in STATS_COLUMNS])
                if table.name not in {"usage_model_hourly", "usage_model_daily",
                                      "usage_version_hourly", "usage_version_daily",
                                      "usage_version_totals"}:
                    assert list(values[-3:]) == [None, None, None]
                else:
                    assert figures_from_row(values) == figures_of(stats_of(values))


def run_stream(
    backend: str, request: pytest.FixtureRequest, ops: list[tuple[Any, ...]], *, forgetful: bool
) -> None:
    """``forgetful``: the store's row cache keeps nothing between batches, so every row a batch
    adds to is read back unless its hour or day is past what was written (the horizon)."""
    limit = _StatsCache.LIMIT
    _StatsCache.LIMIT = 0 if forgetful else limit
    try:
        _run_stream(backend, request, ops)
    finally:
        _StatsCache.LIMIT = limit


def _run_stream(backend: str, request: pytest.FixtureRequest, ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        container = build(make_settings(backend, Path(tmp), request, projection_batch_size=7))
        try:
            owner = uuid.uuid4()
            actor = Actor(owner, "prop")
            model_ids = [
                uuid.UUID(str(container.models.register(actor, name=f"m{i}")["id"]))
                for i in range(4)
            ]
            key_ids = [uuid.uuid4() for _ in range(3)]
            callers = key_texts(key_ids)
            inactive: set[int] = set()
            raw: dict[uuid.UUID, PredictionUsage.Recorded] = {}  # every raw event ever stored
            for op in ops:
                if op[0] == "metered":
                    _, m, r, ms, ok, hour, caller, version = op
                    container.usage.record_measured([MeteredUsage(
                        model_id=model_ids[m], owner_id=owner, request_id=f"m{r}",
                        occurred_at=T0 + timedelta(hours=hour, minutes=r),
                        response_time_ms=ms, input_bytes=1, output_bytes=2, success=ok,
                        status_code=200 if ok else 500, error=None, user_agent=None, ip=None,
                        rejected=m in inactive, api_key_id=callers[caller], caller="c",
                        model_version=version,
                    )])
                elif op[0] == "compact":
                    if op[1]:
                        container.projector.catch_up("usage")
                    raw |= raw_usage(container)
                    compact_all_counted(container)
                elif op[0] == "usage":
                    _, m, r, ms, ok, hour, size = op
                    record = UsageRecord(
                        model_id=model_ids[m],
                        request_id=f"q{r}",
                        response_time_ms=ms,
                        input_bytes=size,
                        output_bytes=size,
                        success=ok,
                        occurred_at=T0 + timedelta(hours=hour, minutes=r),
                    )
                    container.usage.record_batch([record], Writer(owner))
                elif op[0] == "deactivate":
                    container.models.update(actor, model_ids[op[1]], status=ModelStatus.INACTIVE)
                    inactive.add(op[1])
                else:
                    container.projector.batch_size = op[1]
                    container.projector.catch_up("usage")
            container.projector.batch_size = 7
            container.projector.catch_up_all()
            raw |= raw_usage(container)
            check_against_raw(container, owner, model_ids, key_ids, list(raw.values()))
            incremental = dump(container.store, "usage")
            container.projector.rebuild("usage")
            assert dump(container.store, "usage") == incremental
            left = len(raw_usage(container))
            assert compact_all_counted(container) == left
            assert not raw_usage(container)  # the comparisons below are of roll-ups only
            container.projector.catch_up_all()
            assert dump(container.store, "usage") == incremental
            container.projector.rebuild("usage")
            assert dump(container.store, "usage") == incremental
        finally:
            container.close()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(operation, max_size=60), forgetful=st.booleans())
def test_incremental_equals_rebuild_equals_recomputation_on_sqlite(
    request: pytest.FixtureRequest, ops: list[tuple[Any, ...]], forgetful: bool  # noqa: FBT001
) -> None:
    run_stream("sqlite", request, ops, forgetful=forgetful)


@pytest.mark.postgres
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(operation, max_size=60), forgetful=st.booleans())
def test_incremental_equals_rebuild_equals_recomputation_on_postgres(
    request: pytest.FixtureRequest,
    pg_schema: tuple[str, str],
    ops: list[tuple[Any, ...]],
    forgetful: bool,  # noqa: FBT001
) -> None:
    run_stream("postgres", request, ops, forgetful=forgetful)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=compaction_stream, forgetful=st.booleans())
def test_compaction_during_keyed_usage_keeps_live_rebuilt_and_compacted_equal_on_sqlite(
    request: pytest.FixtureRequest, ops: list[tuple[Any, ...]], forgetful: bool  # noqa: FBT001
) -> None:
    run_stream("sqlite", request, ops, forgetful=forgetful)


@pytest.mark.postgres
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=compaction_stream, forgetful=st.booleans())
def test_compaction_during_keyed_usage_keeps_live_rebuilt_and_compacted_equal_on_postgres(
    request: pytest.FixtureRequest,
    pg_schema: tuple[str, str],
    ops: list[tuple[Any, ...]],
    forgetful: bool,  # noqa: FBT001
) -> None:
    run_stream("postgres", request, ops, forgetful=forgetful)
