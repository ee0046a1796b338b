"""Projections on SQLite and PostgreSQL: read-your-writes, statistics, rebuild, concurrency."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import ModelNotFoundError
from domain.model import ModelStatus
from domain.upstream import Upstream, UpstreamHosts
from domain.usage import record_usage
from projections.models import queries
from projections.usage import queries as usage_queries
from projections.usage.tables import ROW_READ
from projections.usage.windows import DAY, bucketise, spans, zone
from services.container import Container
from services.models import Actor
from services.usage import Writer
from tests.helpers import T0, dump, register, usage_records


class TestModelProjection:
    def test_a_command_is_visible_in_list_and_detail_when_it_returns(
        self, container: Container
    ) -> None:
        owner = uuid.uuid4()
        actor = Actor(owner, "c1")
        model_id = register(container, owner, "resnet")
        container.models.update(actor, model_id, name="resnet-50", status=ModelStatus.INACTIVE)
        rows, total = queries.list_models(container.store, owner, limit=10)
        assert total == 1
        assert (rows[0]["name"], rows[0]["status"], rows[0]["endpoint_active"]) == (
            "resnet-50", "inactive", False)
        assert container.models.get(owner, model_id)["version"] == 3

    def test_another_owners_model_is_not_found(self, container: Container) -> None:
        model_id = register(container, uuid.uuid4(), "resnet")
        intruder = Actor(uuid.uuid4(), "c2")
        with pytest.raises(ModelNotFoundError):
            container.models.get(intruder.user_id, model_id)
        with pytest.raises(ModelNotFoundError):
            container.models.update(intruder, model_id, name="mine")
        with pytest.raises(ModelNotFoundError):
            container.models.delete(intruder, model_id)

    def test_deleted_models_are_listed_only_on_request(self, container: Container) -> None:
        owner = uuid.uuid4()
        keep, gone = register(container, owner, "keep"), register(container, owner, "gone")
        container.models.delete(Actor(owner, "c"), gone)
        visible, total = queries.list_models(container.store, owner, limit=10)
        assert [r["id"] for r in visible] == [keep]
        assert total == 1
        _, total_all = queries.list_models(container.store, owner, limit=10, include_deleted=True)
        assert total_all == 2

    def test_keyset_pages_cover_every_model_once(self, container: Container) -> None:
        owner = uuid.uuid4()
        ids = {register(container, owner, f"m{i:02}") for i in range(7)}
        seen: list[uuid.UUID] = []
        after = None
        while True:
            page, total = queries.list_models(container.store, owner, limit=3, sort="name",
                                              descending=True, after=after)
            if not page:
                break
            seen += [r["id"] for r in page]
            after = (page[-1]["name"], page[-1]["id"])
        assert total == 7
        assert set(seen) == ids
        assert len(seen) == 7

class TestUsageProjection:
    def test_statistics_count_every_request_once(self, container: Container) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "resnet")
        records = usage_records(model_id, 300)
        result = container.usage.record_batch(records + records[:50], Writer(owner))
        assert (result.accepted, result.duplicates) == (300, 50)
        container.projector.catch_up("usage")
        usage = container.models.get(owner, model_id).usage
        times = [r.response_time_ms for r in records]
        assert usage.requests == 300
        assert usage.failures == sum(1 for r in records if not r.success)
        assert usage.min_ms == min(times)
        assert usage.max_ms == max(times)
        assert usage.avg_ms == pytest.approx(sum(times) / 300)
        assert usage.input_bytes == sum(r.input_bytes for r in records)

    def test_daily_windows_in_a_time_zone_sum_their_hours(self, container: Container) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "resnet")
        records = usage_records(model_id, 600, every=timedelta(minutes=23))
        container.usage.record_batch(records, Writer(owner))
        container.projector.catch_up("usage")
        tz = zone("America/New_York")
        start, end = T0 - timedelta(days=1), T0 + timedelta(days=11)
        windows = spans("day", tz, start, end)
        assert windows.unit == 1  # New York's days are not UTC days
        buckets = usage_queries.usage_series(container.store, "model", model_id, windows)
        assert sum(b.figures.requests for b in buckets) == 600
        for bucket in buckets:
            expected = [r for r in records if bucket.start <= r.occurred_at < bucket.end]  # type: ignore[operator]
            assert bucket.figures.requests == len(expected)

    @pytest.mark.parametrize(("tz", "switch"), [
        ("Europe/Berlin", datetime(2026, 3, 29, 1, tzinfo=UTC)),  # 23-hour day
        ("Europe/Berlin", datetime(2026, 10, 25, 1, tzinfo=UTC)),  # 25-hour day
        ("America/New_York", datetime(2026, 3, 8, 7, tzinfo=UTC)),
        ("Australia/Sydney", datetime(2026, 4, 4, 16, tzinfo=UTC)),
    ])
    def test_days_across_a_daylight_saving_switch_equal_the_merge_of_their_hours(
        self, container: Container, tz: str, switch: datetime
    ) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "resnet")
        records = usage_records(model_id, 400, start=switch - timedelta(days=3),
                                every=timedelta(minutes=19))
        assert container.usage.record_batch(records, Writer(owner)).accepted == 400
        container.projector.catch_up("usage")
        windows = spans("day", zone(tz), switch - timedelta(days=4), switch + timedelta(days=4))
        assert {s.end_hour - s.first_hour for s in windows} > {24}  # one day is 23 or 25 hours
        for scope, key in (("model", model_id), ("owner", owner)):
            series = usage_queries.usage_series(container.store, scope, key, windows)
            hours = usage_queries.usage_rows(container.store, scope, key, unit=1,
                                             start=windows[0].first_hour, end=windows[-1].end_hour)
            assert series == bucketise(hours, windows)
            times = [r.occurred_at for r in records if r.occurred_at is not None]
            assert [b.figures.requests for b in series] == [
                sum(1 for at in times if b.start <= at < b.end) for b in series]

    @pytest.mark.parametrize("window", ["day", "week", "month"])
    def test_utc_day_week_and_month_windows_read_the_daily_rows_with_the_same_figures(
        self, container: Container, window: str
    ) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "resnet")
        records = usage_records(
            model_id, 600, start=T0 - timedelta(days=41), every=timedelta(minutes=97)
        )
        result = container.usage.record_batch(records, Writer(owner))
        assert result.accepted == 600
        container.projector.catch_up("usage")
        windows = spans(window, zone("UTC"), T0 - timedelta(days=80), T0 + timedelta(days=10))
        assert windows.unit == DAY

        daily = usage_queries.usage_series(container.store, "model", model_id, windows)
        hourly = usage_queries.usage_series(container.store, "model", model_id, windows, unit=1)
        assert daily == hourly
        for bucket in daily:
            expected = [r for r in records if bucket.start <= r.occurred_at < bucket.end]  # type: ignore[operator]
            assert bucket.figures.requests == len(expected)

class TestRebuild:
    def test_rebuild_produces_exactly_the_same_tables(self, container: Container) -> None:
        owner = uuid.uuid4()
        actor = Actor(owner, "c")
        ids = [register(container, owner, f"m{i}") for i in range(3)]
        container.models.update(actor, ids[0], name="renamed", description="d")
        container.models.delete(actor, ids[1])
        for i, model_id in enumerate(ids):
            container.usage.record_batch(usage_records(model_id, 120, prefix=f"x{i}-"),
                                          Writer(owner, all_tenants=True))
        # API keys (one revoked) and usage the endpoint metered with them; an upstream.
        who = actor.who()
        keys = [container.keys.create(owner, f"k{i}", [ids[0]] if i else None, who)[0]
                for i in range(3)]
        container.keys.revoke(owner, keys[1].id, who)
        container.models.upstream_hosts = UpstreamHosts.parse("mlserver")
        container.models.update(actor, ids[2], upstream=Upstream("http://mlserver", "m"))
        container.usage_log.record([
            record_usage(
                model_id=ids[0], owner_id=owner, request_id=f"k{i}",
                occurred_at=T0 + timedelta(hours=i), response_time_ms=1.0, input_bytes=1,
                output_bytes=1, success=True,
                api_key_id=str(keys[i % 2].id), now=T0 + timedelta(days=9),
            )
            for i in range(7)
        ])
        container.projector.catch_up_all()
        before = {name: dump(container.store, name) for name in ("models", "usage")}
        assert len(before["models"]["api_keys"]) == 3
        assert len(before["usage"]["api_key_usage"]) == 2
        for name in ("models", "usage"):
            container.projector.rebuild(name)
            assert dump(container.store, name) == before[name]
        assert {s.name: s.lag for s in container.projector.status()} == {"models": 0, "usage": 0}

    def test_the_live_projection_keeps_working_after_a_rebuild(self, container: Container) -> None:
        owner = uuid.uuid4()
        model_id = register(container, owner, "m")
        container.projector.rebuild("usage")
        container.projector.rebuild("usage")  # twice: index names must not collide
        container.usage.record_batch(usage_records(model_id, 10), Writer(owner))
        container.projector.catch_up("usage")
        assert container.models.get(owner, model_id).usage.requests == 10


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_models_daily_rows_are_read_from_their_key_index_alone(container: Container) -> None:
    """A model's days lie one per heap page; its key index holds what a daily series reads,
    built again by a rebuild."""
    container.projector.rebuild("usage")
    with container.store.read() as cur:
        cur.execute(
            "SELECT i.indnkeyatts, array_agg(a.attname ORDER BY k.n) FROM pg_index i "
            "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = 'usage_model_daily'::regclass AND i.indisprimary "
            "GROUP BY i.indnkeyatts"
        )
        keys, columns = cur.fetchone()
    assert columns[:keys] == ["model_id", "day"]
    assert tuple(columns[keys:]) == ROW_READ
    assert set(ROW_READ) >= {"requests", "p50_bucket", "p99_bucket", "output_bytes"}
