"""Read queries on the projection tables: one short SELECT each, never an aggregate load."""

from __future__ import annotations

from collections.abc import Sequence  # noqa: TC003 - a field type of ModelRow
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec.structs import astuple

from projections.figures import (
    EMPTY,
    SHOWN,
    UsageFigures,
    figures_from_row,
    figures_of,
    shown_from_row,
)
from projections.store import ReadStore, figures_from_sums, stats_from_values
from projections.tables import MODEL_VIEW, ROW_READ, STATS_COLUMNS, STATS_NAMES
from projections.windows import Bucket, bucketise

if TYPE_CHECKING:
    from uuid import UUID

    from domain.usage_stats import UsageStats
    from projections.windows import Windows

_MODEL_KINDS = dict(MODEL_VIEW.columns)
_MODEL_KIND_LIST = tuple(kind for _, kind in MODEL_VIEW.columns)
_MODEL_WIDTH = len(MODEL_VIEW.columns)
_STATS_KIND_LIST = tuple(kind for _, kind in STATS_COLUMNS)
_P50 = STATS_NAMES.index("p50_bucket")
_MODEL_COLUMNS = ", ".join(f"m.{name}" for name in MODEL_VIEW.column_names)
_TOTALS_COLUMNS = ", ".join(f"t.{name}" for name in STATS_NAMES)
SORTABLE = ("created_at", "updated_at", "name")
# SQL in the store's parameter style and its parameters: sync callers run it in ``read()``,
# the API's asynchronous reads (``api/reads.py``) on their own connections.
Statement = tuple[str, list[Any]]


class ModelRow(msgspec.Struct, frozen=True, gc=False):
    """A row of ``model_view`` (``values`` in ``MODEL_VIEW.columns`` order: a list page
    converts up to 100 rows, and no dict is built for them) with the model's all-time usage
    figures (on a list page: only the request count)."""

    values: Sequence[Any]
    usage: UsageFigures

    def __getitem__(self, name: str) -> Any:
        return self.values[MODEL_INDEX[name]]


MODEL_INDEX = {name: index for index, name in enumerate(MODEL_VIEW.column_names)}


def _model_values(store: ReadStore, row: Sequence[Any]) -> Sequence[Any]:
    return store.row_from_db(row[:_MODEL_WIDTH], _MODEL_KIND_LIST)


def model_row(store: ReadStore, row: Sequence[Any]) -> ModelRow:
    """A ``model_view`` row followed by its totals' ``STATS_COLUMNS`` (NULLs: no usage yet)."""
    return ModelRow(_model_values(store, row), _figures(store, row[_MODEL_WIDTH:]))


def list_row(store: ReadStore, row: Sequence[Any]) -> ModelRow:
    """A ``model_view`` row followed by its request count (NULL: no usage yet): a list item
    shows the count, not percentiles, and decoding totals was most of converting a row."""
    return ModelRow(_model_values(store, row), UsageFigures(requests=row[_MODEL_WIDTH] or 0))


def _figures(store: ReadStore, values: Sequence[Any]) -> UsageFigures:
    """A statistics row's figures (NULLs: no usage yet). A totals row stores no percentile
    buckets (``store.stats_values``): they come from its histogram."""
    if values[0] is None:
        return EMPTY
    values = store.row_from_db(values, _STATS_KIND_LIST)
    if values[0] and values[_P50] is None:
        return figures_of(stats_from_values(values))
    return figures_from_row(values)


# ``model_row``s: a model and its totals.
_DETAIL_SELECT = (
    f"SELECT {_MODEL_COLUMNS}, {_TOTALS_COLUMNS} FROM model_view m "
    "LEFT JOIN usage_model_totals t ON t.model_id = m.id"
)


def get_model(store: ReadStore, owner_id: UUID, model_id: UUID) -> ModelRow | None:
    """The owner's model with its usage summary, or None (also for another owner's model)."""
    with store.read() as cur:
        cur.execute(
            store.q(f"{_DETAIL_SELECT} WHERE m.id = ? AND m.owner_id = ?"),
            (store.to_db(model_id, "uuid"), store.to_db(owner_id, "uuid")),
        )
        row = cur.fetchone()
    return None if row is None else model_row(store, row)


def list_models_statements(
    store: ReadStore,
    owner_id: UUID | None,
    *,
    limit: int,
    sort: str = "created_at",
    descending: bool = False,
    after: tuple[Any, UUID] | None = None,
    status: str | None = None,
    name_contains: str | None = None,
    include_deleted: bool = False,
) -> tuple[Statement, Statement]:
    """``list_models``'s two SELECTs: the page (rows for ``list_row``) and the total.

    ``owner_id`` None: the owner is an outer query's ``o.owner`` (``list_models_for_owners``).
    """
    if sort not in SORTABLE:
        raise ValueError(f"cannot sort by {sort!r}")
    where = ["m.owner_id = ?" if owner_id is not None else "m.owner_id = o.owner"]
    params: list[Any] = [store.to_db(owner_id, "uuid")] if owner_id is not None else []
    if status is not None:
        where.append("m.status = ?")
        params.append(status)
    elif not include_deleted:
        where.append("m.status <> 'deleted'")
    if name_contains:
        escaped = (
            name_contains.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        )
        where.append("lower(m.name) LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    filters = " AND ".join(where)
    page_where, page_params = filters, list(params)
    if after is not None:
        op = "<" if descending else ">"
        page_where += f" AND (m.{sort}, m.id) {op} (?, ?)"
        page_params += [store.to_db(after[0], _MODEL_KINDS[sort]), store.to_db(after[1], "uuid")]
    direction = "DESC" if descending else "ASC"
    page = store.q(
        f"SELECT {_MODEL_COLUMNS}, t.requests FROM model_view m "
        "LEFT JOIN usage_model_totals t ON t.model_id = m.id "
        f"WHERE {page_where} ORDER BY m.{sort} {direction}, m.id {direction} LIMIT ?"
    )
    count = store.q(f"SELECT count(*) FROM model_view m WHERE {filters}")
    return (page, [*page_params, limit]), (count, params)


def list_models(
    store: ReadStore, owner_id: UUID, **filters: Any
) -> tuple[list[ModelRow], int]:
    """A keyset page of the owner's models (``list_row``s) and the total matching the filters.

    ``filters``: those of ``list_models_statements`` (``limit`` is required).
    """
    page, count = list_models_statements(store, owner_id, **filters)
    with store.read() as cur:
        cur.execute(*page)
        rows = [list_row(store, row) for row in cur.fetchall()]
        cur.execute(*count)
        total = int(cur.fetchone()[0])
    return rows, total


# PostgreSQL: the API's batched reads (``api/reads.py``). Each answers many keys at once, so
# concurrent requests share one statement.


def get_models_statement(store: ReadStore, model_ids: Sequence[UUID]) -> Statement:
    """PostgreSQL: ``get_model``'s SELECT for many models, whoever owns them (``model_row``s;
    the caller checks the owner)."""
    return store.q(f"{_DETAIL_SELECT} WHERE m.id = ANY(?)"), [list(model_ids)]


def list_models_for_owners(
    store: ReadStore, owner_ids: Sequence[UUID], **filters: Any
) -> Statement:
    """PostgreSQL: ``list_models``'s page and total for each owner, with the same filters.

    Rows, owner by owner in the given order: the owner, the total, then a ``list_row``'s
    columns; a single row with a NULL id for an empty page.
    """
    (page, page_params), (count, count_params) = list_models_statements(store, None, **filters)
    sort = filters.get("sort", "created_at")
    direction = "DESC" if filters.get("descending") else "ASC"
    statement = store.q(
        "SELECT o.owner, c.n, p.* FROM unnest(?::uuid[]) WITH ORDINALITY AS o(owner, ord) "
        f"CROSS JOIN LATERAL ({count}) AS c(n) LEFT JOIN LATERAL ({page}) AS p ON true "
        f"ORDER BY o.ord, p.{sort} {direction}, p.id {direction}"
    )
    return statement, [list(owner_ids), *count_params, *page_params]


_USAGE_TABLES = {
    ("model", 1): ("usage_model_hourly", "model_id", "hour"),
    ("owner", 1): ("usage_owner_hourly", "owner_id", "hour"),
    ("model", 24): ("usage_model_daily", "model_id", "day"),
    ("owner", 24): ("usage_owner_daily", "owner_id", "day"),
}


def model_windows_statement(
    store: ReadStore, model_ids: Sequence[UUID], unit: int, window_starts: Sequence[int],
    end: int,
) -> Statement:
    """PostgreSQL: the owner of each known model among ``model_ids`` and its statistics rows
    summed per window, the windows being consecutive and starting at the ``window_starts``
    (the last ends at ``end``), all counted in ``unit`` hours: 1 (hourly rows) or 24 (daily).

    Rows, by model and window: the model's 1-based position in ``model_ids``, -1 and its
    owner (a model unknown has no such row); then, for each window with usage, the position,
    the window's 0-based index, NULL and ``window_shown``'s columns. Positions, not ids: a
    series has up to 91 rows per model, and loading a UUID per row costs more than the rest.
    When each window is one row (a daily series in UTC, an hourly series) nothing is summed:
    the rows are read as stored, percentiles included.
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
            f"SELECT width_bucket(h.{index}, ?::bigint[]) - 1, NULL::uuid, {_SUMS} "
            f"FROM {table} h WHERE h.model_id = k.id AND h.{index} >= ? AND h.{index} < ? "
            "GROUP BY 1) AS w"
        )
        params = [list(window_starts), start, end]
    return (
        store.q(
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
_SUMS = ", ".join(
    "NULL" if n == "last_at"
    else f"min(h.{n})" if n == "min_us" or n.endswith("_bucket")
    else "max(h.max_us)" if n == "max_us"
    else "array_agg(h.histogram)" if n == "histogram" else f"sum(h.{n})::bigint"
    for n in STATS_NAMES
)


def window_shown(row: Sequence[Any]) -> tuple[int, tuple[Any, ...]]:
    """A ``model_windows_statement`` window (from its index on): the index and its shown
    figures (``figures.shown_from_row``). One row, read as stored (no histograms) or summed
    alone, is presented from its columns; several merge their histograms first."""
    values, histograms = row[2:], row[11]
    if histograms is None or len(histograms) == 1:
        return row[0], shown_from_row(values)
    return row[0], astuple(figures_from_sums(values))[:SHOWN]


def model_lookup(store: ReadStore, model_ids: Sequence[UUID]) -> dict[UUID, tuple[UUID, str]]:
    """Owner and status of each known model among ``model_ids`` (for usage ingest)."""
    with store.read() as cur:
        return store.owners_and_statuses(cur, list(dict.fromkeys(model_ids)))


def usage_rows(
    store: ReadStore, scope: str, key: UUID, *, unit: int, start: int, end: int
) -> list[tuple[int, UsageStats]]:
    """Statistics rows of a model or an owner (``scope``) by hour (``unit`` 1) or UTC day
    (``unit`` 24), ``start <= index < end``, in order."""
    return [
        (index, stats_from_values(values))
        for index, values in _usage_values(store, scope, key, unit=unit, start=start, end=end)
    ]


def _usage_values(
    store: ReadStore, scope: str, key: UUID, *, unit: int, start: int, end: int
) -> list[tuple[int, Sequence[Any]]]:
    """``usage_rows`` as ``STATS_COLUMNS`` values in Python types (histograms not decoded)."""
    table, column, index = _USAGE_TABLES[scope, unit]
    with store.read() as cur:
        cur.execute(
            store.q(
                f"SELECT {index}, {', '.join(STATS_NAMES)} FROM {table} "
                f"WHERE {column} = ? AND {index} >= ? AND {index} < ? ORDER BY {index}"
            ),
            (store.to_db(key, "uuid"), start, end),
        )
        return [
            (int(row[0]), store.row_from_db(row[1:], _STATS_KIND_LIST)) for row in cur.fetchall()
        ]


def usage_series(
    store: ReadStore, scope: str, key: UUID, spans: Windows, *, unit: int | None = None
) -> list[Bucket]:
    """A model's or an owner's statistics per window of ``spans``, merged in Python from the
    daily rows when the windows are whole UTC days (``spans.unit``), else the hourly ones;
    ``unit`` chooses the rows instead. When each window is one of a model's rows, which store
    their percentiles, no histogram is decoded (as ``model_windows_statement`` reads them)."""
    unit = spans.unit if unit is None else unit
    start, end = spans[0].first_hour // unit, spans[-1].end_hour // unit
    if scope == "model" and len(spans) == end - start:
        stored = dict(_usage_values(store, scope, key, unit=unit, start=start, end=end))
        return [
            Bucket(span.start, span.end,
                   figures_from_row(stored[start + i]) if start + i in stored else EMPTY)
            for i, span in enumerate(spans)
        ]
    return bucketise(usage_rows(store, scope, key, unit=unit, start=start, end=end), spans, unit)


def owner_usage(
    store: ReadStore, owner_id: UUID
) -> tuple[UsageFigures, list[tuple[UUID, str | None, UsageFigures]]]:
    """An owner's all-time totals and the per-model breakdown (id, name, figures)."""
    with store.read() as cur:
        cur.execute(
            store.q(f"SELECT {', '.join(STATS_NAMES)} FROM usage_owner_totals WHERE owner_id = ?"),
            (store.to_db(owner_id, "uuid"),),
        )
        row = cur.fetchone()
        totals = EMPTY if row is None else _figures(store, row)
        cur.execute(
            store.q(
                f"SELECT t.model_id, m.name, {', '.join('t.' + n for n in STATS_NAMES)} "
                "FROM usage_model_totals t LEFT JOIN model_view m ON m.id = t.model_id "
                "WHERE t.owner_id = ? ORDER BY t.model_id"
            ),
            (store.to_db(owner_id, "uuid"),),
        )
        per_model = [
            (store.from_db(r[0], "uuid"), r[1], _figures(store, r[2:])) for r in cur.fetchall()
        ]
    return totals, per_model


def artifacts_pending_removal(store: ReadStore, limit: int = 100) -> list[tuple[UUID, str]]:
    """Deleted models whose artifact file has not been removed yet."""
    with store.read() as cur:
        cur.execute(
            store.q(
                "SELECT id, artifact_filename FROM model_view WHERE status = 'deleted' "
                "AND artifact_filename IS NOT NULL AND artifact_removed_at IS NULL LIMIT ?"
            ),
            (limit,),
        )
        return [(store.from_db(r[0], "uuid"), r[1]) for r in cur.fetchall()]
