"""The API's hot reads (model detail, model list, usage series) without a worker thread.

On PostgreSQL they run on the event loop over an ``AsyncConnectionPool`` of autocommit
connections, and concurrent requests of one kind share a statement (``api/read_batching.py``):
a detail, a list page with the same filters or a series over the same hours is one key of a
batched SELECT. What took two queries (a page and its total; the ownership check and the hourly
rows) is one statement. On SQLite the same queries run in a worker thread through the store's
own ``read()``: SQLite has no network round trips to save.

The SQL and the row conversion are ``projections.queries``'s, so both paths answer alike.
"""

from __future__ import annotations

from itertools import groupby
from typing import TYPE_CHECKING, Any

from litestar.concurrency import sync_to_thread
from psycopg_pool import AsyncConnectionPool

from api.read_batching import Coalescer
from projections import queries

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from domain.usage_stats import UsageStats
    from modelledger.settings import Settings
    from projections.store import ReadStore

HourRows = list[tuple[int, "UsageStats"]]
Page = tuple[list[queries.ModelRow], int]
ListKey = tuple["UUID", tuple[tuple[str, Any], ...]]  # the owner, the filters
HoursKey = tuple["UUID", int, int]  # the model, the first hour, the hour after the last


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
                kwargs={"autocommit": True, "options": f"-c search_path={settings.pg_schema}"},
                name="modelledger-api-read",
            )
        # Batch sizes: a batch's answers all wait for its last row, so the more rows a key
        # brings (1 for a detail, up to 100 for a page, up to 2,200 for a series) the fewer keys.
        self.models = Coalescer(self._fetch_models, max_batch=64)
        self.pages = Coalescer(self._fetch_pages, max_batch=16)
        self.hours = Coalescer(self._fetch_hours, max_batch=8)

    async def open(self) -> None:
        if self.pool is not None:
            await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def _run(self, statement: queries.Statement) -> list[Any]:
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
            for owner, owned in groupby(rows, lambda r: r[0]):
                listed = list(owned)
                models = [queries.list_row(self.store, r[2:]) for r in listed if r[2] is not None]
                pages[owner, filters] = (models, int(listed[0][1]))
        return pages

    # -- usage series -------------------------------------------------------------------------

    async def model_hours(
        self, owner_id: UUID, model_id: UUID, hour_from: int, hour_to: int
    ) -> HourRows | None:
        """The model's hourly rows, or None unless it is ``owner_id``'s model."""
        if self.pool is None:
            def both() -> HourRows | None:
                if queries.get_model(self.store, owner_id, model_id) is None:
                    return None
                return queries.usage_hours(self.store, "model", model_id, hour_from, hour_to)

            return await sync_to_thread(both)
        found = await self.hours.load((model_id, hour_from, hour_to))
        if found is None or found[0] != owner_id:
            return None
        return found[1]

    async def _fetch_hours(
        self, keys: Sequence[HoursKey]
    ) -> dict[HoursKey, tuple[UUID, HourRows]]:
        found: dict[HoursKey, tuple[UUID, HourRows]] = {}
        for (hour_from, hour_to), models in _grouped(keys, lambda k: (k[1:], k[0])).items():
            rows = await self._run(
                queries.model_hours_statement(self.store, models, hour_from, hour_to)
            )
            for model_id, of_model in groupby(rows, lambda r: r[0]):
                listed = list(of_model)
                hours = queries.hour_rows(self.store, [r[2:] for r in listed if r[2] is not None])
                found[model_id, hour_from, hour_to] = (listed[0][1], hours)
        return found


def _grouped(keys: Sequence[Any], split: Callable[[Any], tuple[Any, Any]]) -> dict[Any, list[Any]]:
    """``split(key)`` is (what the statement shares, what it varies): one list per shared part."""
    groups: dict[Any, list[Any]] = {}
    for key in keys:
        shared, varied = split(key)
        groups.setdefault(shared, []).append(varied)
    return groups
