"""The ``models`` projection's writer: a batch's row patches into ``model_view`` and
``api_keys``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from projections.models.tables import API_KEYS, MODEL_VERSIONS, MODEL_VIEW

if TYPE_CHECKING:
    from collections.abc import Mapping

    from projections.models.fold import RegistryChanges, RowPatch
    from projections.store.base import Cursor, ReadStore
    from projections.table import Table


def write_model_patches(
    store: ReadStore, cur: Cursor, changes: RegistryChanges, suffix: str = ""
) -> None:
    _write_patches(store, cur, MODEL_VIEW, changes.models, suffix)
    _write_patches(store, cur, API_KEYS, changes.keys, suffix)
    _write_patches(store, cur, MODEL_VERSIONS, changes.versions, suffix)
    for model_id, number, at in changes.removed_latest:
        cur.execute(
            store.sql(
                f"UPDATE {MODEL_VIEW.name}{suffix} SET artifact_removed_at = ? "
                "WHERE id = ? AND latest_version = ?"
            ),
            [store.to_db(at, "ts"), store.to_db(model_id, "uuid"), number],
        )


def _write_patches(
    store: ReadStore, cur: Cursor, table: Table, patches: Mapping[Any, RowPatch], suffix: str
) -> None:
    """Inserts in one upsert, then each patch's updates by key (a tuple for a composite key)."""
    inserts = [
        [patch.insert[name] for name in table.column_names]
        for patch in patches.values()
        if patch.insert is not None
    ]
    if inserts:
        store.upsert(cur, table.suffixed(suffix), inserts)
    kinds = dict(table.columns)
    where = " AND ".join(f"{name} = ?" for name in table.key)
    for row_key, patch in patches.items():
        if patch.insert is None and patch.updates:
            names = sorted(patch.updates)
            assignments = ", ".join(f"{name} = ?" for name in names)
            key = row_key if isinstance(row_key, tuple) else (row_key,)
            cur.execute(
                store.sql(f"UPDATE {table.name}{suffix} SET {assignments} WHERE {where}"),
                [store.to_db(patch.updates[n], kinds[n]) for n in names]
                + [store.to_db(k, kinds[c]) for k, c in zip(key, table.key, strict=True)],
            )
