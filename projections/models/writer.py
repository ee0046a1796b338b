"""The ``models`` projection's writer: a batch's row patches into ``model_view``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.models.tables import MODEL_VIEW

if TYPE_CHECKING:
    from collections.abc import Mapping
    from uuid import UUID

    from projections.models.fold import RowPatch
    from projections.store.base import Cursor, ReadStore


def write_model_patches(
    store: ReadStore, cur: Cursor, patches: Mapping[UUID, RowPatch], suffix: str = ""
) -> None:
    inserts = [
        [patch.insert[name] for name in MODEL_VIEW.column_names]
        for patch in patches.values()
        if patch.insert is not None
    ]
    if inserts:
        store.upsert(cur, MODEL_VIEW.suffixed(suffix), inserts)
    kinds = dict(MODEL_VIEW.columns)
    for model_id, patch in patches.items():
        if patch.insert is None and patch.updates:
            names = sorted(patch.updates)
            assignments = ", ".join(f"{name} = ?" for name in names)
            cur.execute(
                store.sql(f"UPDATE model_view{suffix} SET {assignments} WHERE id = ?"),
                [store.to_db(patch.updates[n], kinds[n]) for n in names]
                + [store.to_db(model_id, "uuid")],
            )
