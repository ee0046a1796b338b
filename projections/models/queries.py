"""Reads of the ``models`` projection: one short SELECT each, never an aggregate load.

A model's all-time usage comes with it (``usage_model_totals`` joined), so a detail is one
statement. SQL is in the store's ``?`` style; ``Statement``s are run by sync callers in
``store.read()`` and by the API's asynchronous batched reads on their own connections.
"""

from __future__ import annotations

from collections.abc import Sequence  # noqa: TC003 - a field type of ModelRow
from datetime import datetime  # noqa: TC003 - a field type of KeyView
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from projections.models.tables import API_KEYS, MODEL_VIEW
from projections.usage.figures import UsageFigures
from projections.usage.queries import totals_figures
from projections.usage.tables import STATS_NAMES

if TYPE_CHECKING:
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


def model_lookup(
    store: ReadStore, model_ids: Sequence[UUID]
) -> dict[UUID, tuple[UUID, str, int]]:
    """Owner, status and latest version of each known model among ``model_ids`` (for usage
    ingest)."""
    distinct = list(dict.fromkeys(model_ids))
    found: dict[UUID, tuple[UUID, str, int]] = {}
    with store.read() as cur:
        for start in range(0, len(distinct), _LOOKUP_CHUNK):
            matches, params = store.any_of(distinct[start : start + _LOOKUP_CHUNK], "uuid")
            cur.execute(
                store.sql(
                    f"SELECT id, owner_id, status, latest_version FROM model_view "
                    f"WHERE id {matches}"
                ),
                params,
            )
            for model_id, owner_id, status, latest in cur.fetchall():
                found[store.from_db(model_id, "uuid")] = (
                    store.from_db(owner_id, "uuid"), status, int(latest)
                )
    return found


_LOOKUP_CHUNK = 500  # SQLite's parameters per statement; PostgreSQL's ANY takes one array


def artifacts_pending_removal(
    store: ReadStore, limit: int = 100, model_id: UUID | None = None
) -> list[tuple[UUID, int, str]]:
    """(model, version, file name) of deleted models' version files not removed yet (of
    ``model_id`` only, when given)."""
    only, params = ("AND m.id = ? ", [store.to_db(model_id, "uuid")]) if model_id else ("", [])
    with store.read() as cur:
        cur.execute(
            store.sql(
                "SELECT v.model_id, v.number, v.filename FROM model_view m "
                "JOIN model_versions v ON v.model_id = m.id "
                f"WHERE m.status = 'deleted' AND v.removed_at IS NULL {only}"
                "ORDER BY v.model_id, v.number LIMIT ?"
            ),
            [*params, limit],
        )
        return [(store.from_db(r[0], "uuid"), int(r[1]), r[2]) for r in cur.fetchall()]


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


# The endpoint's reads: one primary-key look-up each, from any thread.


class VersionFile(msgspec.Struct, frozen=True, gc=False):
    """A version's stored file, as the endpoint loads it."""

    filename: str
    sha256: str
    size_bytes: int
    removed: bool


class ServingRow(msgspec.Struct, frozen=True, gc=False):
    """What the endpoint needs to serve a model: whose it is, whether it may answer, and
    what answers (a version's file, by the serving split, or the upstream server)."""

    owner_id: UUID
    name: str
    status: str
    version: int
    framework: str
    upstream_url: str | None
    upstream_model: str | None
    serving: tuple[tuple[int, int], ...]  # (version, weight); empty: no version yet
    latest_version: int
    files: dict[int, VersionFile]  # the files of the versions asked for (``serving_state``)


_SERVING = ("owner_id", "name", "status", "version", "framework", "upstream_url",
            "upstream_model", "serving", "latest_version")
_SERVING_KINDS = [_MODEL_KINDS[name] for name in _SERVING]
_FIRST_ONLY = ((1, 100),)


def serving_split(text: str | None, latest_version: int) -> tuple[tuple[int, int], ...]:
    """``model_view.serving`` as a split (NULL: version 1 alone, once it exists)."""
    if text is None:
        return _FIRST_ONLY if latest_version >= 1 else ()
    return tuple((v, w) for v, w in msgspec.json.decode(text, type=list[tuple[int, int]]))


def serving_state(
    store: ReadStore, model_id: UUID, number: int | None = None
) -> ServingRow | None:
    """The model's serving state with the files of its serving versions (``number``: of that
    version alone), or None when no model has that id (whoever owns it)."""
    with store.read() as cur:
        cur.execute(
            store.sql(f"SELECT {', '.join(_SERVING)} FROM model_view WHERE id = ?"),
            (store.to_db(model_id, "uuid"),),
        )
        row = cur.fetchone()
        if row is None:
            return None
        values = list(store.row_from_db(row, _SERVING_KINDS))
        split = serving_split(values[7], values[8])
        wanted = [number] if number is not None else [v for v, _ in split]
        files: dict[int, VersionFile] = {}
        if wanted:
            placeholders = ", ".join("?" for _ in wanted)
            cur.execute(
                store.sql(
                    "SELECT number, filename, sha256, size_bytes, removed_at FROM model_versions "
                    f"WHERE model_id = ? AND number IN ({placeholders})"
                ),
                [store.to_db(model_id, "uuid"), *wanted],
            )
            for n, filename, sha256, size_bytes, removed_at in cur.fetchall():
                files[int(n)] = VersionFile(filename, sha256, int(size_bytes),
                                            removed_at is not None)
    values[7] = split
    values.append(files)
    return ServingRow(*values)


class VersionView(msgspec.Struct, frozen=True):
    """A version as its model's owner sees it."""

    number: int
    filename: str
    size_bytes: int
    sha256: str
    notes: str
    created_at: datetime
    created_by: str
    removed_at: datetime | None


_VERSION_COLUMNS = ("number", "filename", "size_bytes", "sha256", "notes", "created_at",
                    "created_by", "removed_at")
_VERSION_KINDS = ("int", "text", "int", "text", "text", "ts", "text", "ts")


def list_versions(
    store: ReadStore, model_id: UUID, *, after: int = 0, limit: int = 100,
    number: int | None = None,
) -> list[VersionView]:
    """A model's versions by number after ``after`` (or the one ``number``), whoever owns it:
    the caller checks the owner first."""
    where, params = "model_id = ? AND number > ?", [store.to_db(model_id, "uuid"), after]
    if number is not None:
        where, params = "model_id = ? AND number = ?", [store.to_db(model_id, "uuid"), number]
    with store.read() as cur:
        cur.execute(
            store.sql(
                f"SELECT {', '.join(_VERSION_COLUMNS)} FROM model_versions WHERE {where} "
                "ORDER BY number LIMIT ?"
            ),
            [*params, limit],
        )
        return [VersionView(*store.row_from_db(r, _VERSION_KINDS)) for r in cur.fetchall()]


class ApiKeyRow(msgspec.Struct, frozen=True, gc=False):
    """What checking a key needs: its owner, the models it covers (None: all of the
    owner's), its secret's hash and whether it was revoked."""

    owner_id: UUID
    models: frozenset[UUID] | None
    secret_sha256: str
    revoked: bool


def api_key_row(store: ReadStore, key_id: UUID) -> ApiKeyRow | None:
    """The key's row, or None when no key has that id."""
    with store.read() as cur:
        cur.execute(
            store.sql(
                "SELECT owner_id, models, secret_sha256, revoked_at FROM api_keys WHERE id = ?"
            ),
            (store.to_db(key_id, "uuid"),),
        )
        row = cur.fetchone()
    if row is None:
        return None
    models = _model_ids(row[1])
    return ApiKeyRow(
        store.from_db(row[0], "uuid"), None if models is None else frozenset(models), row[2],
        row[3] is not None,
    )


def _model_ids(text: str | None) -> list[UUID] | None:
    return None if text is None else msgspec.json.decode(text, type=list[UUID])


class KeyView(msgspec.Struct, frozen=True):
    """A key as its owner sees it (never its secret): its requests and latest use so far."""

    id: UUID
    name: str
    models: list[UUID] | None
    created_at: datetime
    requests: int
    last_used_at: datetime | None


_KEY_COLUMNS = ("k.id", "k.name", "k.models", "k.created_at", "u.requests", "u.last_used_at")
_KEY_KINDS = ("uuid", "text", "text", "ts", "int", "ts")
_KEY_SELECT = (
    f"SELECT {', '.join(_KEY_COLUMNS)} FROM api_keys k "
    "LEFT JOIN api_key_usage u ON u.api_key_id = k.id"
)


def _key_view(store: ReadStore, row: Sequence[Any]) -> KeyView:
    key_id, name, models, created_at, requests, last_used_at = store.row_from_db(row, _KEY_KINDS)
    return KeyView(key_id, name, _model_ids(models), created_at, requests or 0, last_used_at)


def live_keys(store: ReadStore, owner_id: UUID) -> list[KeyView]:
    """The owner's keys not revoked, oldest first."""
    with store.read() as cur:
        cur.execute(
            store.sql(
                f"{_KEY_SELECT} WHERE k.owner_id = ? AND k.revoked_at IS NULL "
                "ORDER BY k.created_at, k.id"
            ),
            (store.to_db(owner_id, "uuid"),),
        )
        return [_key_view(store, row) for row in cur.fetchall()]


def get_key(store: ReadStore, owner_id: UUID, key_id: UUID) -> KeyView | None:
    """The owner's key (revoked or not), or None (also for another owner's key)."""
    with store.read() as cur:
        cur.execute(
            store.sql(f"{_KEY_SELECT} WHERE k.id = ? AND k.owner_id = ?"),
            (store.to_db(key_id, "uuid"), store.to_db(owner_id, "uuid")),
        )
        row = cur.fetchone()
    return None if row is None else _key_view(store, row)


def live_key_count(store: ReadStore, owner_id: UUID) -> int:
    with store.read() as cur:
        cur.execute(
            store.sql(
                f"SELECT count(*) FROM {API_KEYS.name} WHERE owner_id = ? AND revoked_at IS NULL"
            ),
            (store.to_db(owner_id, "uuid"),),
        )
        return int(cur.fetchone()[0])
