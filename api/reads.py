"""The API's hot reads (model detail, model list, usage series) without a worker thread.

On PostgreSQL they run on the event loop over an ``AsyncConnectionPool`` of autocommit
connections: one statement is one round trip (the store's ``read()`` costs four: BEGIN, SET
TRANSACTION, the SELECT, COMMIT, plus a hop to a worker thread), and what took two queries
(a page and its total; the ownership check and the hourly rows) is one statement. On SQLite
the same queries run in a worker thread through the store's own ``read()``: SQLite has no
network round trips to save.

The SQL and the row conversion are ``projections.queries``'s, so both paths answer alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.concurrency import sync_to_thread
from psycopg_pool import AsyncConnectionPool

from projections import queries

if TYPE_CHECKING:
    from uuid import UUID

    from domain.usage_stats import UsageStats
    from modelledger.settings import Settings
    from projections.store import ReadStore

HourRows = list[tuple[int, "UsageStats"]]


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

    async def open(self) -> None:
        if self.pool is not None:
            await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    @staticmethod
    async def _run(pool: AsyncConnectionPool[Any], statement: queries.Statement) -> list[Any]:
        async with pool.connection() as conn:
            cursor = await conn.execute(*statement, binary=True)
            rows: list[Any] = await cursor.fetchall()
            return rows

    async def get_model(self, owner_id: UUID, model_id: UUID) -> queries.ModelRow | None:
        """``queries.get_model``."""
        if self.pool is None:
            return await sync_to_thread(queries.get_model, self.store, owner_id, model_id)
        statement = queries.get_model_statement(self.store, owner_id, model_id)
        rows = await self._run(self.pool, statement)
        return queries.model_row(self.store, rows[0]) if rows else None

    async def list_models(
        self, owner_id: UUID, **filters: Any
    ) -> tuple[list[queries.ModelRow], int]:
        """``queries.list_models``: the page and the total, in one round trip."""
        if self.pool is None:
            return await sync_to_thread(
                lambda: queries.list_models(self.store, owner_id, **filters)
            )
        rows = await self._run(
            self.pool, queries.list_models_in_one(self.store, owner_id, **filters)
        )
        page = [queries.list_row(self.store, r[1:]) for r in rows if r[1] is not None]
        return page, int(rows[0][0])

    async def model_hours(
        self, owner_id: UUID, model_id: UUID, hour_from: int, hour_to: int
    ) -> HourRows | None:
        """The model's hourly rows, or None unless it is ``owner_id``'s model (one round trip)."""
        if self.pool is None:
            def both() -> HourRows | None:
                if queries.get_model(self.store, owner_id, model_id) is None:
                    return None
                return queries.usage_hours(self.store, "model", model_id, hour_from, hour_to)

            return await sync_to_thread(both)
        rows = await self._run(
            self.pool,
            queries.model_hours_in_one(self.store, owner_id, model_id, hour_from, hour_to),
        )
        if not rows[0][0]:
            return None
        return queries.hour_rows(self.store, [r[1:] for r in rows if r[1] is not None])
