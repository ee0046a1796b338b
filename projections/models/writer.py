"""The ``models`` projection's writer: a batch's row patches into ``model_view`` and
``api_keys``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.models.tables import API_KEYS, MODEL_VIEW

if TYPE_CHECKING:
    from collections.abc import Mapping
    from uuid import UUID

    from projections.models.fold import RegistryChanges, RowPatch
    from projections.store.base import Cursor, ReadStore
    from projections.table import Table


def write_model_patches(
    store: ReadStore, cur: Cursor, changes: RegistryChanges, suffix: str = ""
) -> None:
    _write_patches(store, cur, MODEL_VIEW, changes.models, suffix)
    _write_patches(store, cur, API_KEYS, changes.keys, suffix)


def _write_patches(
    store: ReadStore, cur: Cursor, table: Table, patches: Mapping[UUID, RowPatch], suffix: str
) -> None:
    inserts = [
        [patch.insert[name] for name in table.column_names]
        for patch in patches.values()
        if patch.insert is not None
    ]
    if inserts:
        store.upsert(cur, table.suffixed(suffix), inserts)
    kinds = dict(table.columns)
    for row_id, patch in patches.items():
        if patch.insert is None and patch.updates:
            names = sorted(patch.updates)
            assignments = ", ".join(f"{name} = ?" for name in names)
            cur.execute(
                store.sql(f"UPDATE {table.name}{suffix} SET {assignments} WHERE id = ?"),
                [store.to_db(patch.updates[n], kinds[n]) for n in names]
                + [store.to_db(row_id, "uuid")],
            )
