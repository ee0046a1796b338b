"""The read store port: projection tables, their tracking positions and batch writes.

One subclass per backend (``sqlite_store``, ``postgres_store``) owns the connection handling,
locking and bulk SQL; everything that can be said once in SQL both understand lives here.
SQL is written with ``?`` placeholders; the PostgreSQL store rewrites them to ``%s``.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from domain import latency
from domain.usage_stats import UsageStats
from projections.figures import QUANTILES, UsageFigures, figures_of
from projections.tables import (
    MODEL_VIEW,
    PROJECTION_TABLES,
    USAGE_MODEL_DAILY,
    USAGE_MODEL_HOURLY,
    USAGE_MODEL_TOTALS,
    USAGE_OWNER_DAILY,
    USAGE_OWNER_HOURLY,
    USAGE_OWNER_TOTALS,
    Table,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from contextlib import AbstractContextManager
    from uuid import UUID

    from projections.model_view import RowPatch
    from projections.usage_view import UsageDelta

# Bumped when a projection's tables or fold change: the old tables must then be rebuilt.
SCHEMA_VERSIONS: dict[str, int] = {"models": 1, "usage": 3}
NEXT = "__next"  # suffix of the tables a rebuild builds aside

_hist_encoder = msgspec.msgpack.Encoder()
_hist_decoder = msgspec.msgpack.Decoder(dict[int, int])


class Cursor(Protocol):
    def execute(self, query: Any, params: Any = ..., /) -> Any: ...
    def executemany(self, query: Any, params_seq: Any, /) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class SchemaMismatchError(RuntimeError):
    """Projection tables were built by another schema version of the code."""


class ReadStore(ABC):
    """Projection tables of one database, with their tracking rows."""

    backend: str
    type_names: Mapping[str, str]
    index_includes = False  # indexes may hold non-key columns (``Table.key_includes``)
    _stats_caches: dict[str, _StatsCache]

    def __init__(self) -> None:
        self._stats_caches = {}

    # -- connections, supplied by each backend ---------------------------------------------

    @abstractmethod
    def write(self, lock_name: str) -> AbstractContextManager[Cursor]:
        """A write transaction that excludes every other writer of ``lock_name`` until it ends."""

    @abstractmethod
    def read(self) -> AbstractContextManager[Cursor]:
        """A read-only transaction (one consistent snapshot)."""

    @abstractmethod
    def table_exists(self, cur: Cursor, name: str) -> bool: ...

    @abstractmethod
    def fetch_stats(
        self, cur: Cursor, table: Table, keys: Sequence[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], UsageStats]:
        """Existing statistics rows of ``keys`` (keys in Python types)."""

    @abstractmethod
    def upsert(self, cur: Cursor, table: Table, rows: Sequence[Sequence[Any]]) -> None:
        """Insert or wholly replace rows given in Python types, in column order."""

    @abstractmethod
    def close(self) -> None: ...

    def lock(self, cur: Cursor, name: str) -> None:
        """Also take the write lock of ``name`` in the caller's write transaction.

        A no-op where the write transaction itself excludes every other writer (SQLite).
        """
        del cur, name

    def q(self, sql: str) -> str:
        """Adapt a ``?``-placeholder statement to the backend."""
        return sql

    def to_db(self, value: Any, kind: str) -> Any:  # noqa: ARG002 - backends convert by kind
        return value

    def from_db(self, value: Any, kind: str) -> Any:  # noqa: ARG002 - backends convert by kind
        return value

    def row_from_db(self, values: Sequence[Any], kinds: Sequence[str]) -> Sequence[Any]:
        """``from_db`` of each value of a row."""
        return [self.from_db(v, k) for v, k in zip(values, kinds, strict=True)]

    # -- schema -------------------------------------------------------------------------

    def setup(self) -> None:
        """Create the tracking table and any missing projection tables."""
        with self.write("setup") as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS projection_state ("
                "name TEXT PRIMARY KEY, position BIGINT NOT NULL, "
                "schema_version INTEGER NOT NULL, updated_at TEXT NOT NULL)"
            )
            for projection in PROJECTION_TABLES:
                self.create_tables(cur, projection, "")

    def create_tables(self, cur: Cursor, projection: str, suffix: str) -> None:
        created = False
        for table in PROJECTION_TABLES[projection]:
            if not self.table_exists(cur, table.name + suffix):
                for statement in self.ddl(table, suffix):
                    cur.execute(statement)
                created = True
        if created and self._state(cur, projection + suffix) is None:
            self.set_position(cur, projection + suffix, 0)

    def drop_tables(self, cur: Cursor, projection: str, suffix: str) -> None:
        for table in PROJECTION_TABLES[projection]:
            cur.execute(f"DROP TABLE IF EXISTS {table.name}{suffix}")
        cur.execute(self.q("DELETE FROM projection_state WHERE name = ?"), (projection + suffix,))

    def swap_in(self, cur: Cursor, projection: str) -> None:
        """Replace the live tables by the ones built aside, in the caller's transaction."""
        state = self._state(cur, projection + NEXT)
        if state is None:
            raise AssertionError("nothing was built aside")
        for table in PROJECTION_TABLES[projection]:
            cur.execute(f"DROP TABLE IF EXISTS {table.name}")
            cur.execute(f"ALTER TABLE {table.name}{NEXT} RENAME TO {table.name}")
        cur.execute(self.q("DELETE FROM projection_state WHERE name = ?"), (projection + NEXT,))
        self.set_position(cur, projection, state[0])

    def ddl(self, table: Table, suffix: str) -> list[str]:
        generation = secrets.token_hex(4)  # index names must stay unique across swaps
        columns = ", ".join(
            f"{name} {self.type_names[kind]}"
            + (" NOT NULL" if name in table.key or name in table.not_null else "")
            for name, kind in table.columns
        )
        statements = [
            (
                f"CREATE TABLE {table.name}{suffix} ({columns}, "
                f"CONSTRAINT pk_{table.name}_{generation} PRIMARY KEY ({', '.join(table.key)})"
                + (f" INCLUDE ({', '.join(table.key_includes)}))"
                   if table.key_includes and self.index_includes else ")")
            )
        ]
        statements += [
            f"CREATE INDEX ix_{table.name}_{purpose}_{generation} "
            f"ON {table.name}{suffix} ({', '.join(columns)})"
            for purpose, columns in table.indexes
        ]
        return statements

    def check_schema(self) -> list[str]:
        """Projections whose tables were built by another schema version than this code's."""
        with self.read() as cur:
            cur.execute("SELECT name, schema_version FROM projection_state")
            stored = dict(cur.fetchall())
        return [
            name
            for name, version in SCHEMA_VERSIONS.items()
            if name in stored and stored[name] != version
        ]

    # -- tracking -----------------------------------------------------------------------

    def _state(self, cur: Cursor, tracking_name: str) -> tuple[int, int] | None:
        cur.execute(
            self.q("SELECT position, schema_version FROM projection_state WHERE name = ?"),
            (tracking_name,),
        )
        row = cur.fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def position(self, cur: Cursor, tracking_name: str) -> int:
        state = self._state(cur, tracking_name)
        return 0 if state is None else state[0]

    def set_position(self, cur: Cursor, tracking_name: str, position: int) -> None:
        projection = tracking_name.removesuffix(NEXT)
        cur.execute(
            self.q(
                "INSERT INTO projection_state (name, position, schema_version, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "position = excluded.position, schema_version = excluded.schema_version, "
                "updated_at = excluded.updated_at"
            ),
            (tracking_name, position, SCHEMA_VERSIONS[projection], _now_text()),
        )

    def positions(self) -> dict[str, tuple[int, int, str]]:
        """Tracking rows: name -> (position, schema version, updated at)."""
        with self.read() as cur:
            cur.execute("SELECT name, position, schema_version, updated_at FROM projection_state")
            return {row[0]: (int(row[1]), int(row[2]), str(row[3])) for row in cur.fetchall()}

    # -- reads the write side needs ---------------------------------------------------------

    def owners_and_statuses(
        self, cur: Cursor, model_ids: Sequence[UUID]
    ) -> dict[UUID, tuple[UUID, str]]:
        """Owner and status of each known model among distinct ``model_ids``."""
        found: dict[UUID, tuple[UUID, str]] = {}
        for start in range(0, len(model_ids), 500):
            chunk = model_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            cur.execute(
                self.q(f"SELECT id, owner_id, status FROM model_view WHERE id IN ({marks})"),
                [self.to_db(model_id, "uuid") for model_id in chunk],
            )
            for model_id, owner_id, status in cur.fetchall():
                found[self.from_db(model_id, "uuid")] = (self.from_db(owner_id, "uuid"), status)
        return found

    # -- batch writes -------------------------------------------------------------------

    def write_model_patches(
        self, cur: Cursor, patches: Mapping[UUID, RowPatch], suffix: str = ""
    ) -> None:
        inserts = [
            [patch.insert[name] for name in MODEL_VIEW.column_names]
            for patch in patches.values()
            if patch.insert is not None
        ]
        if inserts:
            self.upsert(cur, _suffixed(MODEL_VIEW, suffix), inserts)
        kinds = dict(MODEL_VIEW.columns)
        for model_id, patch in patches.items():
            if patch.insert is None and patch.updates:
                names = sorted(patch.updates)
                assignments = ", ".join(f"{name} = ?" for name in names)
                cur.execute(
                    self.q(f"UPDATE model_view{suffix} SET {assignments} WHERE id = ?"),
                    [self.to_db(patch.updates[n], kinds[n]) for n in names]
                    + [self.to_db(model_id, "uuid")],
                )

    def merge_usage(
        self, cur: Cursor, delta: UsageDelta, suffix: str, before: int, after: int
    ) -> None:
        """Merge a batch's statistics (log positions ``before`` -> ``after``) into the usage tables.

        Rows this process wrote last are kept in memory and reused while the tracking
        position proves nobody else wrote since (``before`` equals the cached position), so
        a follower that keeps up reads back almost nothing.
        """
        cache = self._stats_caches.setdefault("usage" + suffix, _StatsCache())
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
            ):
                self._merge_stats(
                    cur, _suffixed(table, suffix), stats, extra, cache, percentiles=percentiles
                )
        except BaseException:
            cache.clear()
            raise
        cache.end(after)

    def _merge_stats(
        self,
        cur: Cursor,
        table: Table,
        delta: Mapping[tuple[Any, ...], UsageStats],
        extra: Mapping[UUID, UUID] | tuple[()],
        cache: _StatsCache,
        *,
        percentiles: bool,
    ) -> None:
        """Upsert ``delta`` merged into the rows it adds to. ``percentiles`` False: leave the
        percentile columns NULL (``stats_values``)."""
        if not delta:
            return
        known = cache.rows.setdefault(table.name, {})
        missing = [key for key in delta if key not in known]
        horizon = cache.horizon(table)
        if horizon is not None:  # a key later than every row written cannot be in the table
            missing = [key for key in missing if key[1] <= horizon]
        if missing:
            known.update(self.fetch_stats(cur, table, missing))
        rows = []
        for key, stats in delta.items():
            merged = known.get(key)
            if merged is None:
                merged = known[key] = stats
            else:
                merged.merge(stats)
            prefix = (*key, extra[key[0]]) if extra else key
            rows.append((*prefix, *stats_values(merged, percentiles=percentiles)))
        self.upsert(cur, table, rows)
        if horizon is not None:
            cache.advance(table, max(horizon, *(key[1] for key in delta)))


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


def stats_values(stats: UsageStats, *, percentiles: bool) -> tuple[Any, ...]:
    """A ``UsageStats`` as the values of ``tables.STATS_COLUMNS``.

    ``percentiles`` False leaves the percentile buckets NULL: readers compute them from the
    histogram (``ReadStore.merge_usage`` says which tables store them).
    """
    histogram = dict(sorted(stats.histogram.items()))  # canonical bytes
    return (
        stats.requests,
        stats.successes,
        stats.failures,
        stats.rejected,
        stats.total_us,
        stats.min_us,
        stats.max_us,
        stats.input_bytes,
        stats.output_bytes,
        _hist_encoder.encode(histogram),
        stats.last_at,
        *(
            latency.sorted_percentile_buckets(list(histogram), list(histogram.values()), QUANTILES)
            if percentiles else (None, None, None)
        ),
    )


def stats_from_values(values: Sequence[Any]) -> UsageStats:
    """The inverse of ``stats_values`` (values already in Python types)."""
    return _stats_with(values, _hist_decoder.decode(values[9]))


def figures_from_sums(values: Sequence[Any]) -> UsageFigures:
    """Figures of several rows summed in SQL (``STATS_COLUMNS``' sums and extremes, and the
    array of the rows' encoded histograms, which are decoded and added up here)."""
    histograms = values[9]
    histogram: dict[int, int] = _hist_decoder.decode(histograms[0])
    for encoded in histograms[1:]:
        latency.merge_into(histogram, _hist_decoder.decode(encoded))
    return figures_of(_stats_with(values, histogram))


def _stats_with(values: Sequence[Any], histogram: dict[int, int]) -> UsageStats:
    (requests, successes, failures, rejected, total_us, min_us, max_us,
     input_bytes, output_bytes, _, last_at) = values[:11]
    return UsageStats(
        requests=requests,
        successes=successes,
        failures=failures,
        rejected=rejected,
        total_us=total_us,
        min_us=min_us,
        max_us=max_us,
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        histogram=histogram,
        last_at=last_at,
    )


def _suffixed(table: Table, suffix: str) -> Table:
    if not suffix:
        return table
    return Table(table.name + suffix, table.columns, table.key, table.indexes, table.not_null)


def _now_text() -> str:
    return datetime.now(UTC).isoformat()
