"""Reads of the ``usage`` projection: a model's or an owner's statistics per time window.

SQL is in the store's ``?`` style; ``Statement``s are run by sync callers in ``store.read()``
and by the API's asynchronous batched reads on their own connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgspec.structs import astuple

from domain import latency
from domain.usage_stats import UsageStats, without
from projections.usage import zoned
from projections.usage.figures import (
    EMPTY,
    SHOWN,
    UsageFigures,
    figures_from_row,
    figures_from_sums,
    figures_of,
    shown_from_row,
)
from projections.usage.rows import HISTOGRAM, P50, QUANTILES, decode_histogram, stats_of
from projections.usage.tables import ROW_READ, STATS_COLUMNS, STATS_NAMES
from projections.usage.windows import DAY, Bucket, bucketise

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from uuid import UUID

    from projections.store.base import ReadStore, Statement
    from projections.usage.windows import Windows

_STATS_KIND_LIST = tuple(kind for _, kind in STATS_COLUMNS)


def totals_figures(
    store: ReadStore, values: Sequence[Any], *, converted: bool = False
) -> UsageFigures:
    """A totals row's figures (NULLs: no usage yet; ``converted``: in Python types already).
    A model's totals store no percentile buckets (``usage.writer``): they come from the
    histogram."""
    if values[0] is None:
        return EMPTY
    if not converted:
        values = store.row_from_db(values, _STATS_KIND_LIST)
    if values[0] and values[P50] is None:
        return figures_of(stats_of(values))
    return figures_from_row(values)


_USAGE_TABLES = {
    ("model", 1): ("usage_model_hourly", "model_id", "hour"),
    ("owner", 1): ("usage_owner_hourly", "owner_id", "hour"),
    ("model", 24): ("usage_model_daily", "model_id", "day"),
    ("owner", 24): ("usage_owner_daily", "owner_id", "day"),
    # A version's rows: the key is (model id, version).
    ("version", 1): ("usage_version_hourly", "model_id = ? AND model_version", "hour"),
    ("version", 24): ("usage_version_daily", "model_id = ? AND model_version", "day"),
    # All of a model's versions but 1 (the key is the model id): what version 1's are less.
    ("others", 1): ("usage_version_hourly", "model_id", "hour"),
    ("others", 24): ("usage_version_daily", "model_id", "day"),
}
# Scopes whose rows store their percentile buckets (``usage.writer``).
_STORED_PERCENTILES = frozenset({"model", "version"})


def _key_params(store: ReadStore, scope: str, key: Any) -> tuple[Any, ...]:
    if scope == "version":
        model_id, version = key
        return (store.to_db(model_id, "uuid"), version)
    return (store.to_db(key, "uuid"),)


def model_windows_statement(
    store: ReadStore, model_ids: Sequence[UUID], unit: int, window_starts: Sequence[int],
    end: int, *, histograms: bool = True,
) -> Statement:
    """PostgreSQL: the owner of each known model among ``model_ids`` and its statistics rows
    summed per window, the windows being consecutive and starting at the ``window_starts``
    (the last ends at ``end``), all counted in ``unit`` hours: 1 (hourly rows) or 24 (daily).

    Rows, by model and window: the model's 1-based position in ``model_ids``, -1 and its
    owner (a model unknown has no such row); then, for each window with usage, the position,
    the window's 0-based index, NULL and ``window_index_and_figures``'s columns. Positions, not
    ids: a series has up to 91 rows per model, and a UUID per row costs more than the rest.
    When each window is one row (a daily series in UTC, an hourly series) nothing is summed:
    the rows are read as stored, percentiles included. ``histograms`` False: the windows' are
    not read (``zoned_histograms_statement`` reads what makes them up).
    """
    table, _, index = _USAGE_TABLES["model", unit]
    start = window_starts[0]
    if len(window_starts) == end - start:  # one unit per window
        windows = (
            f"SELECT k.ord, h.{index} - ?, NULL, {_ROW_COLUMNS} FROM k "
            f"JOIN {table} h ON h.model_id = k.id AND h.{index} >= ? AND h.{index} < ?"
        )
        params: list[Any] = [start, start, end]
    else:
        windows = (
            "SELECT k.ord, w.* FROM k CROSS JOIN LATERAL ("
            f"SELECT width_bucket(h.{index}, ?::bigint[]) - 1, NULL::uuid, "
            f"{_SUMS if histograms else _SUMS_ONLY} "
            f"FROM {table} h WHERE h.model_id = k.id AND h.{index} >= ? AND h.{index} < ? "
            "GROUP BY 1) AS w"
        )
        params = [list(window_starts), start, end]
    return (
        store.sql(
            "WITH k AS (SELECT * FROM unnest(?::uuid[]) WITH ORDINALITY AS k(id, ord)) "
            f"SELECT k.ord, -1, m.owner_id, {_NO_STATS} FROM k JOIN model_view m ON m.id = k.id "
            f"UNION ALL {windows} ORDER BY 1, 2"
        ),
        [list(model_ids), *params],
    )


_NO_STATS = ", ".join("NULL" for _ in STATS_NAMES)
# A window's bucket shows no ``last_at`` (NULL: loading a timestamp per row was a tenth of a
# 90-day series' cost). A row as stored: its histogram is not needed either (NULL), its
# percentile buckets are: ``tables.ROW_READ``, which the daily key index holds.
_ROW_COLUMNS = ", ".join(f"h.{n}" if n in ROW_READ else "NULL" for n in STATS_NAMES)
# Summed rows: a window of one row keeps that row's percentile buckets (min of one value).
def _sums(histogram: str) -> str:
    """The summed row's columns, its histogram column being ``histogram``."""
    return ", ".join(
        "NULL" if n == "last_at"
        else f"min(h.{n})" if n == "min_us" or n.endswith("_bucket")
        else "max(h.max_us)" if n == "max_us"
        else histogram if n == "histogram" else f"sum(h.{n})::bigint"
        for n in STATS_NAMES
    )


_SUMS = _sums("array_agg(h.histogram)")
_SUMS_ONLY = _sums("NULL::bytea[]")  # the histograms come from ``zoned_histograms_statement``


def zoned_histograms_statement(
    store: ReadStore, model_ids: Sequence[UUID], covers: Sequence[zoned.Cover]
) -> Statement:
    """PostgreSQL: what the histograms of windows that are not whole UTC days are made of
    (``zoned``): rows of the model's 1-based position in ``model_ids``, 0 and a day or 1 and an
    hour, and that row's histogram, for the days and edge hours of ``covers``."""
    days = sorted({day for cover in covers for day in cover.days})
    hours = sorted({hour for cover in covers for hour in (*cover.plus, *cover.minus)})
    return (
        store.sql(
            "WITH k AS (SELECT * FROM unnest(?::uuid[]) WITH ORDINALITY AS k(id, ord)) "
            "SELECT k.ord, 0, d.day, d.histogram FROM k JOIN usage_model_daily d "
            "ON d.model_id = k.id AND d.day = ANY(?::bigint[]) UNION ALL "
            "SELECT k.ord, 1, h.hour, h.histogram FROM k JOIN usage_model_hourly h "
            "ON h.model_id = k.id AND h.hour = ANY(?::bigint[]) ORDER BY 1"
        ),
        [list(model_ids), days, hours],
    )


def zoned_index_and_figures(
    row: Sequence[Any], cover: zoned.Cover, days: Mapping[int, bytes], hours: Mapping[int, bytes]
) -> tuple[int, tuple[Any, ...]]:
    """``window_index_and_figures`` of a window read without its histogram (``histograms``
    False), which ``cover``'s days and hours make up."""
    values = row[2:]
    histogram = zoned.histogram_of(cover, days, hours)
    return row[0], shown_from_row(
        (*values[:HISTOGRAM], None, None, *latency.percentile_buckets(histogram, QUANTILES)))


def window_index_and_figures(row: Sequence[Any]) -> tuple[int, tuple[Any, ...]]:
    """A ``model_windows_statement`` window (from its index on): the index and its shown
    figures (``figures.shown_from_row``). One row, read as stored (no histograms) or summed
    alone, is presented from its columns; several merge their histograms first."""
    values = row[2:]
    histograms = values[HISTOGRAM]
    if histograms is None or len(histograms) == 1:
        return row[0], shown_from_row(values)
    return row[0], astuple(figures_from_sums(values))[:SHOWN]


# What ``usage_rows`` reads: every statistic but the stored percentile buckets (a merged
# histogram gives them). Integers and bytes come from both backends as Python needs them, so
# only ``last_at`` is converted: for a 90-day series in a zone other than UTC (2,160 hourly
# rows) converting every column was a fifth of its time.
_MERGED = ("requests", "successes", "failures", "rejected", "total_us", "min_us", "max_us",
           "input_bytes", "output_bytes", "histogram", "last_at")


def _range_sql(store: ReadStore, scope: str, unit: int, columns: Sequence[str]) -> str:
    """The index and ``columns`` of ``scope``'s rows by ``unit`` hours, ``start <= index <
    end`` (parameters: the key's, start, end), in order."""
    table, column, index = _USAGE_TABLES[scope, unit]
    return store.sql(
        f"SELECT {index}, {', '.join(columns)} FROM {table} "
        f"WHERE {column} = ? AND {index} >= ? AND {index} < ? ORDER BY {index}"
    )


def usage_rows(
    store: ReadStore, scope: str, key: Any, *, unit: int, start: int, end: int
) -> list[tuple[int, UsageStats]]:
    """Statistics rows of a model, an owner, a version or a model's other versions
    (``scope``) by hour (``unit`` 1) or UTC day (``unit`` 24), ``start <= index < end``, in
    order (``others``: every version but 1, so an index may come once per version)."""
    with store.read() as cur:
        cur.execute(_range_sql(store, scope, unit, _MERGED),
                    (*_key_params(store, scope, key), start, end))
        rows = cur.fetchall()
    when = store.from_db
    return [
        (int(at), UsageStats(requests, successes, failures, rejected, total_us, min_us, max_us,
                             in_bytes, out_bytes, decode_histogram(histogram), when(last, "ts")))
        for at, requests, successes, failures, rejected, total_us, min_us, max_us, in_bytes,
        out_bytes, histogram, last in rows
    ]


def _usage_values(
    store: ReadStore, scope: str, key: Any, *, unit: int, start: int, end: int
) -> list[tuple[int, Sequence[Any]]]:
    """``usage_rows`` as ``STATS_COLUMNS`` values in Python types (histograms not decoded)."""
    with store.read() as cur:
        cur.execute(_range_sql(store, scope, unit, STATS_NAMES),
                    (*_key_params(store, scope, key), start, end))
        return [
            (int(row[0]), store.row_from_db(row[1:], _STATS_KIND_LIST)) for row in cur.fetchall()
        ]


def usage_series(
    store: ReadStore, scope: str, key: Any, spans: Windows, *, unit: int | None = None
) -> list[Bucket]:
    """A model's or an owner's statistics per window of ``spans``, merged in Python from the
    daily rows when the windows are whole UTC days (``spans.unit``), else the hourly ones;
    ``unit`` chooses the rows instead. When each window is one of a model's rows, which store
    their percentiles, no histogram is decoded (as ``model_windows_statement`` reads them)."""
    unit = spans.unit if unit is None else unit
    start, end = spans[0].first_hour // unit, spans[-1].end_hour // unit
    if scope == "version" and key[1] == 1:
        return bucketise(first_version_rows(store, key[0], unit=unit, start=start, end=end),
                         spans, unit)
    if scope in _STORED_PERCENTILES and len(spans) == end - start:
        stored = dict(_usage_values(store, scope, key, unit=unit, start=start, end=end))
        return [
            Bucket(span.start, span.end,
                   figures_from_row(stored[start + i]) if start + i in stored else EMPTY)
            for i, span in enumerate(spans)
        ]
    if unit == 1 and scope in _ZONED:
        return _zoned_series(store, scope, key, spans)
    return bucketise(usage_rows(store, scope, key, unit=unit, start=start, end=end), spans, unit)


# The scopes whose daily rows are their hours' sums (``others`` holds several versions a row).
_ZONED = frozenset({"model", "owner", "version"})


def _zoned_series(store: ReadStore, scope: str, key: Any, spans: Windows) -> list[Bucket]:
    """``usage_series`` of windows that are not whole UTC days (``zoned`` says how): the
    hourly rows of the UTC days the windows touch, and those days' histograms."""
    first_day, end_day = spans[0].first_hour // DAY, -(-spans[-1].end_hour // DAY)
    params = _key_params(store, scope, key)
    with store.read() as cur:
        cur.execute(_range_sql(store, scope, 1, _MERGED), (*params, first_day * DAY, end_day * DAY))
        hour_rows = cur.fetchall()
        cur.execute(_range_sql(store, scope, DAY, ("histogram",)), (*params, first_day, end_day))
        day_histograms = {int(at): histogram for at, histogram in cur.fetchall()}
    return zoned.buckets(spans, hour_rows, day_histograms, store.from_db)


def owner_usage(
    store: ReadStore, owner_id: UUID
) -> tuple[UsageFigures, list[tuple[UUID, str | None, UsageFigures]]]:
    """An owner's all-time totals and the per-model breakdown (id, name, figures)."""
    with store.read() as cur:
        cur.execute(
            store.sql(
                f"SELECT {', '.join(STATS_NAMES)} FROM usage_owner_totals WHERE owner_id = ?"
            ),
            (store.to_db(owner_id, "uuid"),),
        )
        row = cur.fetchone()
        totals = EMPTY if row is None else totals_figures(store, row)
        cur.execute(
            store.sql(
                f"SELECT t.model_id, m.name, {', '.join('t.' + n for n in STATS_NAMES)} "
                "FROM usage_model_totals t LEFT JOIN model_view m ON m.id = t.model_id "
                "WHERE t.owner_id = ? ORDER BY t.model_id"
            ),
            (store.to_db(owner_id, "uuid"),),
        )
        per_model = [
            (store.from_db(r[0], "uuid"), r[1], totals_figures(store, r[2:]))
            for r in cur.fetchall()
        ]
    return totals, per_model




def version_totals(store: ReadStore, model_id: UUID) -> list[tuple[int, UsageFigures]]:
    """Each version's all-time figures (versions with usage only), by version."""
    with store.read() as cur:
        cur.execute(*version_totals_statement(store, [model_id]))
        rows = cur.fetchall()
    return versions_of_totals(store, [row[1:] for row in rows])


def version_totals_statement(store: ReadStore, model_ids: Sequence[UUID]) -> Statement:
    """The model totals (as version 0) and the other versions' totals of each model; rows
    (model id, version, stats...) by model and version, for ``versions_of_totals``."""
    names = ", ".join(STATS_NAMES)
    matches, params = store.any_of(model_ids, "uuid")
    return (
        store.sql(
            f"SELECT model_id, 0, {names} FROM usage_model_totals WHERE model_id {matches} "
            f"UNION ALL SELECT model_id, model_version, {names} FROM usage_version_totals "
            f"WHERE model_id {matches} ORDER BY 1, 2"
        ),
        [*params, *params],
    )


def versions_of_totals(
    store: ReadStore, rows: Sequence[Sequence[Any]]
) -> list[tuple[int, UsageFigures]]:
    """A model's totals rows from ``version_totals_statement`` (version, stats...) as each
    version's figures: version 1's are the model's minus the others' (``without``)."""
    model = None
    others: list[tuple[int, Sequence[Any]]] = []
    for row in rows:
        values = store.row_from_db(row[1:], _STATS_KIND_LIST)
        if int(row[0]) == 0:
            model = values
        else:
            others.append((int(row[0]), values))
    found = [(version, totals_figures(store, values, converted=True)) for version, values in others]
    if model is None:
        return found
    if not others:
        first = totals_figures(store, model, converted=True)
    else:
        rest = UsageStats()
        for _, values in others:
            rest.merge(stats_of(values))
        first = figures_of(without(stats_of(model), rest))
    if first.requests or first.rejected:
        found.insert(0, (1, first))
    return found


def first_version_rows(
    store: ReadStore, model_id: UUID, *, unit: int, start: int, end: int
) -> list[tuple[int, UsageStats]]:
    """Version 1's statistics rows (hours or days, ``start <= index < end``): the model's rows
    minus the other versions' rows of the same index."""
    others: dict[int, UsageStats] = {}
    for at, stats in usage_rows(store, "others", model_id, unit=unit, start=start, end=end):
        others.setdefault(at, UsageStats()).merge(stats)
    found = []
    for at, stats in usage_rows(store, "model", model_id, unit=unit, start=start, end=end):
        first = without(stats, others[at]) if at in others else stats
        if first.requests or first.rejected:
            found.append((at, first))
    return found


def versions_used(store: ReadStore, model_id: UUID, start_hour: int, end_hour: int) -> list[int]:
    """The versions with usage in the hours ``start_hour <= hour < end_hour``, in order."""
    with store.read() as cur:
        cur.execute(
            store.sql(
                "SELECT DISTINCT model_version FROM usage_version_hourly "
                "WHERE model_id = ? AND hour >= ? AND hour < ? ORDER BY model_version"
            ),
            (store.to_db(model_id, "uuid"), start_hour, end_hour),
        )
        others = [int(r[0]) for r in cur.fetchall()]
    first = version_window(store, model_id, 1, start_hour, end_hour)
    return [1, *others] if first.requests or first.rejected else others


def version_window(
    store: ReadStore, model_id: UUID, version: int, start_hour: int, end_hour: int
) -> UsageStats:
    """A version's statistics over the hours ``start_hour <= hour < end_hour``, merged exactly
    (sums, histograms; version 1's extremes as ``without`` says)."""
    def merged(scope: str, key: Any) -> UsageStats:
        total = UsageStats()
        for _, stats in usage_rows(store, scope, key, unit=1, start=start_hour, end=end_hour):
            total.merge(stats)
        return total

    if version != 1:
        return merged("version", (model_id, version))
    # The window's own difference, not the sum of the hours' differences: it keeps every exact
    # extreme the whole window can prove.
    return without(merged("model", model_id), merged("others", model_id))


def models_overview(
    store: ReadStore, model_ids: Sequence[UUID], *, days: tuple[int, int],
    hours: tuple[int, int],
) -> dict[UUID, tuple[dict[int, int], int, UsageFigures]]:
    """For a list page's models: requests per UTC day in ``days`` (start, end), the sum of
    requests in ``hours`` and the all-time figures, by model (three SELECTs, one snapshot)."""
    if not model_ids:
        return {}
    found: dict[UUID, tuple[dict[int, int], int, UsageFigures]] = {
        m: ({}, 0, EMPTY) for m in model_ids
    }
    matches, params = store.any_of(list(model_ids), "uuid")
    with store.read() as cur:
        cur.execute(
            store.sql(f"SELECT model_id, day, requests FROM usage_model_daily WHERE model_id "
                      f"{matches} AND day >= ? AND day < ?"), [*params, *days],
        )
        for model, day, requests in cur.fetchall():
            found[store.from_db(model, "uuid")][0][int(day)] = int(requests)
        cur.execute(
            store.sql(f"SELECT model_id, sum(requests) FROM usage_model_hourly WHERE model_id "
                      f"{matches} AND hour >= ? AND hour < ? GROUP BY model_id"),
            [*params, *hours],
        )
        recent = {store.from_db(m, "uuid"): int(n) for m, n in cur.fetchall()}
        cur.execute(
            store.sql(f"SELECT model_id, {', '.join(STATS_NAMES)} FROM usage_model_totals "
                      f"WHERE model_id {matches}"), params,
        )
        totals = {store.from_db(r[0], "uuid"): totals_figures(store, r[1:])
                  for r in cur.fetchall()}
    return {m: (daily, recent.get(m, 0), totals.get(m, EMPTY))
            for m, (daily, _, _) in found.items()}
