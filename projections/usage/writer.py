"""The ``usage`` projection's writer: a batch's statistics merged into the usage tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from projections.usage.rows import row_of, stats_of
from projections.usage.tables import (
    API_KEY_USAGE,
    STATS_NAMES,
    USAGE_MODEL_DAILY,
    USAGE_MODEL_HOURLY,
    USAGE_MODEL_TOTALS,
    USAGE_OWNER_DAILY,
    USAGE_OWNER_HOURLY,
    USAGE_OWNER_TOTALS,
    USAGE_VERSION_DAILY,
    USAGE_VERSION_HOURLY,
    USAGE_VERSION_TOTALS,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from uuid import UUID

    from domain.usage_stats import UsageStats
    from projections.store.base import Cursor, ReadStore
    from projections.table import Table
    from projections.usage.fold import KeyUse, UsageDelta


def merge_usage(  # noqa: PLR0917 - the projector's writer signature
    store: ReadStore, cur: Cursor, delta: UsageDelta, suffix: str, before: int, after: int
) -> None:
    """Merge a batch's statistics (log positions ``before`` -> ``after``) into the usage tables.

    Rows this process wrote last are kept in memory and reused while the tracking
    position proves nobody else wrote since (``before`` equals the cached position), so
    a follower that keeps up reads back almost nothing.
    """
    cache = store.writer_caches.setdefault("usage" + suffix, _StatsCache())
    cache.begin(before)
    try:
        # (table, rows keyed like it, owner per model id for a column after the key, whether
        # it stores percentile buckets). Only a model's hours and days do: a single row of
        # them answers a series bucket; the owners' windows are merged in Python, and the
        # totals' large histograms are rewritten every batch (a detail read computes them).
        for table, stats, extra, percentiles in (
            (USAGE_MODEL_HOURLY, delta.model_hourly, (), True),
            (USAGE_MODEL_DAILY, delta.model_daily, (), True),
            (USAGE_OWNER_HOURLY, delta.owner_hourly, (), False),
            (USAGE_OWNER_DAILY, delta.owner_daily, (), False),
            (
                USAGE_MODEL_TOTALS,
                {(model_id,): s for model_id, s in delta.model_totals.items()},
                delta.model_owner,
                False,
            ),
            (
                USAGE_OWNER_TOTALS,
                {(owner_id,): s for owner_id, s in delta.owner_totals.items()},
                (),
                False,
            ),
            (USAGE_VERSION_HOURLY, delta.version_hourly, (), True),
            (USAGE_VERSION_DAILY, delta.version_daily, (), True),
            (USAGE_VERSION_TOTALS, delta.version_totals, (), True),
        ):
            _merge_stats(
                store, cur, table.suffixed(suffix), stats, extra, cache=cache,
                percentiles=percentiles
            )
        _merge_key_use(store, cur, API_KEY_USAGE.suffixed(suffix), delta.keys)
    except BaseException:
        cache.clear()
        raise
    cache.end(after)


def _merge_stats(
    store: ReadStore,
    cur: Cursor,
    table: Table,
    delta: Mapping[tuple[Any, ...], UsageStats],
    extra: Mapping[UUID, UUID] | tuple[()],
    *,
    cache: _StatsCache,
    percentiles: bool,
) -> None:
    """Upsert ``delta`` merged into the rows it adds to. ``percentiles`` False: leave the
    percentile columns NULL (``rows.row_of``)."""
    if not delta:
        return
    known = cache.rows.setdefault(table.name, {})
    missing = [key for key in delta if key not in known]
    horizon = cache.horizon(table)
    if horizon is not None:  # a key later than every row written cannot be in the table
        missing = [key for key in missing if key[-1] <= horizon]
    if missing:
        found = store.fetch_rows(cur, table, missing, STATS_NAMES)
        known.update((key, stats_of(row)) for key, row in found.items())
    rows = []
    for key, stats in delta.items():
        merged = known.get(key)
        if merged is None:
            merged = known[key] = stats
        else:
            merged.merge(stats)
        prefix = (*key, extra[key[0]]) if extra else key
        rows.append((*prefix, *row_of(merged, percentiles=percentiles)))
    store.upsert(cur, table, rows)
    if horizon is not None:
        cache.advance(table, max(horizon, *(key[-1] for key in delta)))


def _merge_key_use(
    store: ReadStore, cur: Cursor, table: Table, keys: Mapping[UUID, KeyUse]
) -> None:
    """Add a batch's requests per key to the keys' rows: one read and one upsert per batch."""
    if not keys:
        return
    found = store.fetch_rows(
        cur, table, [(key_id,) for key_id in keys], ("requests", "last_used_at")
    )
    rows = []
    for key_id, use in keys.items():
        requests, last_at = use.requests, use.last_at
        if (known := found.get((key_id,))) is not None:
            requests, last_at = requests + known[0], max(last_at, known[1])
        rows.append((key_id, requests, last_at))
    store.upsert(cur, table, rows)


class _StatsCache:
    """Statistics rows as last written, valid while ``position`` is the tracking position.

    ``horizons``: for each table keyed by time (hour, day), the latest time index written; known
    only while every write since position 0 (empty tables) went through this cache. A key later
    than its table's horizon is new, so it is not read back: a rebuild or a first catch-up,
    which move forward in time, read back almost nothing.
    """

    LIMIT = 50_000  # rows kept at most (bounds memory); past it the cache starts again empty

    def __init__(self) -> None:
        self.position: int | None = None
        self.rows: dict[str, dict[tuple[Any, ...], UsageStats]] = {}
        self.horizons: dict[str, int] | None = None

    def clear(self) -> None:
        self.position = None
        self.rows = {}
        self.horizons = None

    def begin(self, position: int) -> None:
        if self.position != position:
            self.rows = {}
            self.horizons = {} if position == 0 else None  # position 0: nothing written yet
        elif sum(map(len, self.rows.values())) > self.LIMIT:
            self.rows = {}  # the horizons stay true: they depend on no row kept
        self.position = None  # until the batch is written, the rows are in flux

    def advance(self, table: Table, latest: int) -> None:
        if self.horizons is not None:
            self.horizons[table.name] = latest

    def horizon(self, table: Table) -> int | None:
        """The table's horizon (-1: empty), or None when unknown or not keyed by time."""
        if self.horizons is None or table.key[-1] not in {"hour", "day"}:
            return None
        return self.horizons.get(table.name, -1)

    def end(self, position: int) -> None:
        self.position = position
