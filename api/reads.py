"""The API's hot reads (model detail, model list, usage series) without a worker thread.

On PostgreSQL they run on the event loop over an ``AsyncConnectionPool`` of autocommit
connections, and concurrent requests of one kind share a statement (``api/read_batching.py``):
a detail, a list page with the same filters or a series over the same hours is one key of a
batched SELECT. What took two queries (a page and its total; the ownership check and the hourly
rows) is one statement. On SQLite the same queries run in a worker thread through the store's
own ``read()``: SQLite has no network round trips to save.

The SQL and the row conversion are the read models' (``projections.models.queries``,
``projections.usage.queries``), so both paths answer alike.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from itertools import groupby
from typing import TYPE_CHECKING, Any

import psycopg
from litestar.concurrency import sync_to_thread
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api import presenters
from api.read_batching import Coalescer
from projections.models import queries
from projections.store.postgres import server_may_have_ended
from projections.usage import queries as usage_queries
from projections.usage import windows, zoned

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from uuid import UUID

    from psycopg import AsyncConnection

    from api.schemas import UsageBucket
    from config.settings import Settings
    from projections.store.base import ReadStore, Statement
    from projections.usage.figures import UsageFigures
    from projections.usage.windows import Windows

Page = tuple[list[queries.ModelRow], int]
ListKey = tuple["UUID", tuple[tuple[str, Any], ...]]  # the owner, the filters
# The model, the window, the time zone, the first hour, the hour after the last: the windows
# (``windows.spans``) are a function of the last four.
SeriesKey = tuple["UUID", str, str, int, int]
_SERVER_GONE = frozenset({"57P01", "57P02", "57P03"})  # admin/crash shutdown, cannot connect now


class Reads:
    """Asynchronous read queries; ``open()`` and ``close()`` on the serving event loop."""

    def __init__(self, store: ReadStore, settings: Settings) -> None:
        self.store = store
        self.pool: AsyncConnectionPool[Any] | None = None
        if store.backend == "postgres":
            self.pool = AsyncConnectionPool(
                settings.postgres_conninfo(),
                min_size=1,
                # As many as the sync pool: concurrent requests queue for these connections.
                max_size=settings.pg_pool_size,
                open=False,
                # A connection the server dropped (a restart) is replaced, not handed out.
                check=_check_connection,
                kwargs={
                    "autocommit": True,
                    "options": f"-c search_path={settings.pg_schema}",
                    # Names the pool in pg_stat_activity (which schema's API reads these are).
                    "application_name": f"modelledger-api-read {settings.pg_schema}"[:63],
                },
                name="modelledger-api-read",
            )
        # Batch sizes: a batch's answers all wait for its last row, so the more rows a key
        # brings (1 for a detail, up to 100 for a page, 91 for a 90-day series) the fewer keys.
        isolate = self.may_come_from_one_key
        self.models = Coalescer(self._fetch_models, max_batch=64, isolate=isolate)
        self.pages = Coalescer(self._fetch_pages, max_batch=16, isolate=isolate)
        self.series = Coalescer(self._fetch_series, max_batch=8, isolate=isolate)
        self.versions = Coalescer(self._fetch_version_totals, max_batch=64, isolate=isolate)

    @staticmethod
    def may_come_from_one_key(error: Exception) -> bool:
        """False when the server is out of reach (no connection, or it went away): every key
        would fail alike. Anything else may come from one key's values."""
        if isinstance(error, PoolTimeout):
            return False
        if isinstance(error, psycopg.OperationalError):
            state = error.sqlstate
            return not (state is None or state.startswith("08") or state in _SERVER_GONE)
        return True

    async def open(self) -> None:
        if self.pool is not None:
            await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def _run(self, statement: Statement) -> list[Any]:
        assert self.pool is not None  # noqa: S101 - only the PostgreSQL paths get here
        async with self.pool.connection() as conn:
            cursor = await conn.execute(*statement, binary=True)
            rows: list[Any] = await cursor.fetchall()
            return rows

    # -- model detail -----------------------------------------------------------------------

    async def get_model(self, owner_id: UUID, model_id: UUID) -> queries.ModelRow | None:
        """``queries.get_model``."""
        if self.pool is None:
            return await sync_to_thread(queries.get_model, self.store, owner_id, model_id)
        row = await self.models.load(model_id)
        return row if row is not None and row["owner_id"] == owner_id else None

    async def _fetch_models(self, model_ids: Sequence[UUID]) -> dict[UUID, queries.ModelRow]:
        rows = await self._run(queries.get_models_statement(self.store, model_ids))
        found = [queries.model_row(self.store, row) for row in rows]
        return {row["id"]: row for row in found}

    async def version_totals(self, model_id: UUID) -> list[tuple[int, UsageFigures]]:
        """``usage_queries.version_totals`` (whoever owns the model: the caller checks)."""
        if self.pool is None:
            return await sync_to_thread(usage_queries.version_totals, self.store, model_id)
        return await self.versions.load(model_id) or []

    async def _fetch_version_totals(
        self, model_ids: Sequence[UUID]
    ) -> dict[UUID, list[tuple[int, UsageFigures]]]:
        rows = await self._run(usage_queries.version_totals_statement(self.store, model_ids))
        found: dict[UUID, list[tuple[int, UsageFigures]]] = {}
        for model_id, of_model in groupby(rows, lambda row: row[0]):
            found[model_id] = usage_queries.versions_of_totals(
                self.store, [row[1:] for row in of_model]
            )
        return found

    # -- model list ---------------------------------------------------------------------------

    async def list_models(self, owner_id: UUID, **filters: Any) -> Page:
        """``queries.list_models``: the page and the total."""
        if self.pool is None:
            return await sync_to_thread(
                lambda: queries.list_models(self.store, owner_id, **filters)
            )
        page = await self.pages.load((owner_id, tuple(sorted(filters.items()))))
        assert page is not None  # noqa: S101 - every owner has a page, perhaps empty
        return page

    async def _fetch_pages(self, keys: Sequence[ListKey]) -> dict[ListKey, Page]:
        pages: dict[ListKey, Page] = {}
        for filters, owners in _grouped(keys, lambda key: (key[1], key[0])).items():
            rows = await self._run(
                queries.list_models_for_owners(self.store, owners, **dict(filters))
            )
            for owner, total, listed in _per_key(rows):
                pages[owner, filters] = (
                    [queries.list_row(self.store, row) for row in listed], int(total)
                )
        return pages

    # -- usage series -------------------------------------------------------------------------

    async def model_series(
        self, owner_id: UUID, model_id: UUID, window: str, tz: str, spans: Windows
    ) -> list[UsageBucket] | None:
        """The model's statistics per window (``spans``), presented, or None unless it is
        ``owner_id``'s model. Whole UTC days are read from the daily rows, anything else from
        the hourly ones; on PostgreSQL windows of several rows are summed in SQL (a busy model
        has 2,160 hourly rows in 90 days, and Python would build and merge each)."""
        if self.pool is None:
            def both() -> list[UsageBucket] | None:
                if queries.get_model(self.store, owner_id, model_id) is None:
                    return None
                return [presenters.bucket(b) for b in
                        usage_queries.usage_series(self.store, "model", model_id, spans)]

            return await sync_to_thread(both)
        key = (model_id, window, tz, spans[0].first_hour, spans[-1].end_hour)
        found = await self.series.load(key)
        if found is None or found[0] != owner_id:
            return None
        return found[1]

    async def _fetch_series(
        self, keys: Sequence[SeriesKey]
    ) -> dict[SeriesKey, tuple[UUID, list[UsageBucket]]]:
        found: dict[SeriesKey, tuple[UUID, list[UsageBucket]]] = {}
        for shared, models in _grouped(keys, lambda key: (key[1:], key[0])).items():
            window, tz, first_hour, end_hour = shared
            spans = windows.spans(window, windows.zone(tz), _hour(first_hour), _hour(end_hour))
            unit = spans.unit
            # Days, weeks or months that are not whole UTC days: their histograms are made of
            # day rows and edge hours (``zoned``), not the merge of all their hours.
            covers = [zoned.Cover(s.first_hour, s.end_hour) for s in spans] if (
                unit == 1 and len(spans) < end_hour - first_hour) else None
            rows = await self._run(usage_queries.model_windows_statement(
                self.store, models, unit, [span.first_hour // unit for span in spans],
                end_hour // unit, histograms=covers is None,
            ))
            parts: dict[int, tuple[dict[int, bytes], dict[int, bytes]]] = defaultdict(
                lambda: ({}, {}))  # model position -> (days, hours) histograms
            if covers is not None:
                for position, kind, at, histogram in await self._run(
                        usage_queries.zoned_histograms_statement(self.store, models, covers)):
                    parts[position][kind][at] = histogram
            for position, of_model in groupby(rows, lambda row: row[0]):
                header, *listed = of_model
                if header[1] != -1:  # no such model
                    continue
                if covers is None:
                    shown = dict(usage_queries.window_index_and_figures(row[1:]) for row in listed)
                else:
                    days, hours = parts[position]
                    shown = dict(usage_queries.zoned_index_and_figures(
                        row[1:], covers[row[1]], days, hours) for row in listed)
                buckets = presenters.series(spans, shown)
                found[(models[position - 1], *shared)] = (header[2], buckets)
        return found


async def _check_connection(conn: AsyncConnection[Any]) -> None:
    """``AsyncConnectionPool.check_connection``, only where the server may have ended the
    connection (``server_may_have_ended``)."""
    if server_may_have_ended(conn):
        await AsyncConnectionPool.check_connection(conn)  # raises for a dead one: replaced


def _per_key(rows: list[Any]) -> Iterator[tuple[Any, Any, list[Any]]]:
    """Rows of a batched statement (key, a per-key value, then a LEFT JOIN's columns, NULL
    when it matched nothing), ordered by key: each key, its value and its joined rows."""
    for key, of_key in groupby(rows, lambda row: row[0]):
        listed = list(of_key)
        yield key, listed[0][1], [row[2:] for row in listed if row[2] is not None]


def _hour(index: int) -> datetime:
    return datetime.fromtimestamp(index * 3600, UTC)


def _grouped(keys: Sequence[Any], split: Callable[[Any], tuple[Any, Any]]) -> dict[Any, list[Any]]:
    """``split(key)`` is (what the statement shares, what it varies): one list per shared part."""
    groups: dict[Any, list[Any]] = {}
    for key in keys:
        shared, varied = split(key)
        groups.setdefault(shared, []).append(varied)
    return groups
