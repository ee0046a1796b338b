"""Reads of the ``models`` projection: one short SELECT each, never an aggregate load.

A model's all-time usage comes with it (``usage_model_totals`` joined), so a detail is one
statement. SQL is in the store's ``?`` style; ``Statement``s are run by sync callers in
``store.read()`` and by the API's asynchronous batched reads on their own connections.
"""

from __future__ import annotations

from collections.abc import Sequence  # noqa: TC003 - a field type of ModelRow
from typing import TYPE_CHECKING, Any

import msgspec

from projections.models.tables import MODEL_VIEW
from projections.usage.figures import UsageFigures
from projections.usage.queries import totals_figures
from projections.usage.tables import STATS_NAMES

if TYPE_CHECKING:
    from uuid import UUID

    from projections.store.base import ReadStore, Statement

_MODEL_KINDS = dict(MODEL_VIEW.columns)
_MODEL_KIND_LIST = tuple(kind for _, kind in MODEL_VIEW.columns)
_MODEL_WIDTH = len(MODEL_VIEW.columns)
_MODEL_COLUMNS = ", ".join(f"m.{name}" for name in MODEL_VIEW.column_names)
_TOTALS_COLUMNS = ", ".join(f"t.{name}" for name in STATS_NAMES)
SORTABLE = ("created_at", "updated_at", "name")


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
    return ModelRow(_model_values(store, row), totals_figures(store, row[_MODEL_WIDTH:]))


def list_row(store: ReadStore, row: Sequence[Any]) -> ModelRow:
    """A ``model_view`` row followed by its request count (NULL: no usage yet): a list item
    shows the count, not percentiles, and decoding totals was most of converting a row."""
    return ModelRow(_model_values(store, row), UsageFigures(requests=row[_MODEL_WIDTH] or 0))


# ``model_row``s: a model and its totals.
_DETAIL_SELECT = (
    f"SELECT {_MODEL_COLUMNS}, {_TOTALS_COLUMNS} FROM model_view m "
    "LEFT JOIN usage_model_totals t ON t.model_id = m.id"
)


def get_model(store: ReadStore, owner_id: UUID, model_id: UUID) -> ModelRow | None:
    """The owner's model with its usage summary, or None (also for another owner's model)."""
    with store.read() as cur:
        cur.execute(
            store.sql(f"{_DETAIL_SELECT} WHERE m.id = ? AND m.owner_id = ?"),
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
    page = store.sql(
        f"SELECT {_MODEL_COLUMNS}, t.requests FROM model_view m "
        "LEFT JOIN usage_model_totals t ON t.model_id = m.id "
        f"WHERE {page_where} ORDER BY m.{sort} {direction}, m.id {direction} LIMIT ?"
    )
    count = store.sql(f"SELECT count(*) FROM model_view m WHERE {filters}")
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
    return store.sql(f"{_DETAIL_SELECT} WHERE m.id = ANY(?)"), [list(model_ids)]


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
    statement = store.sql(
        "SELECT o.owner, c.n, p.* FROM unnest(?::uuid[]) WITH ORDINALITY AS o(owner, ord) "
        f"CROSS JOIN LATERAL ({count}) AS c(n) LEFT JOIN LATERAL ({page}) AS p ON true "
        f"ORDER BY o.ord, p.{sort} {direction}, p.id {direction}"
    )
    return statement, [list(owner_ids), *count_params, *page_params]


def model_lookup(store: ReadStore, model_ids: Sequence[UUID]) -> dict[UUID, tuple[UUID, str]]:
    """Owner and status of each known model among ``model_ids`` (for usage ingest)."""
    distinct = list(dict.fromkeys(model_ids))
    found: dict[UUID, tuple[UUID, str]] = {}
    with store.read() as cur:
        for start in range(0, len(distinct), _LOOKUP_CHUNK):
            matches, params = store.any_of(distinct[start : start + _LOOKUP_CHUNK], "uuid")
            cur.execute(
                store.sql(f"SELECT id, owner_id, status FROM model_view WHERE id {matches}"),
                params,
            )
            for model_id, owner_id, status in cur.fetchall():
                found[store.from_db(model_id, "uuid")] = (store.from_db(owner_id, "uuid"), status)
    return found


_LOOKUP_CHUNK = 500  # SQLite's parameters per statement; PostgreSQL's ANY takes one array


def artifacts_pending_removal(store: ReadStore, limit: int = 100) -> list[tuple[UUID, str]]:
    """Deleted models whose artifact file has not been removed yet."""
    with store.read() as cur:
        cur.execute(
            store.sql(
                "SELECT id, artifact_filename FROM model_view WHERE status = 'deleted' "
                "AND artifact_filename IS NOT NULL AND artifact_removed_at IS NULL LIMIT ?"
            ),
            (limit,),
        )
        return [(store.from_db(r[0], "uuid"), r[1]) for r in cur.fetchall()]


def models_with_versions(
    store: ReadStore, *, at_least: int, after: UUID | None, limit: int = 500
) -> list[tuple[UUID, int]]:
    """(id, version) of models whose version is at least ``at_least``, by id after ``after``."""
    keyset, params = ("AND id > ? ", [store.to_db(after, "uuid")]) if after else ("", [])
    with store.read() as cur:
        cur.execute(
            store.sql(
                f"SELECT id, version FROM model_view WHERE version >= ? {keyset}"
                "ORDER BY id LIMIT ?"
            ),
            [at_least, *params, limit],
        )
        return [(store.from_db(r[0], "uuid"), int(r[1])) for r in cur.fetchall()]
