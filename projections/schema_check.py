"""Start-up check: refuse to run against projection tables built by another schema version.

A projection's tables carry the schema version of the code that built them
(``projection_state.schema_version``). When the code's version differs, the tables must be
rebuilt aside and swapped in; serving or folding into the old ones would give wrong answers.
"""

from __future__ import annotations

from typing import Protocol

from projections.catalogue import SCHEMA_VERSIONS
from projections.store.base import ReadStore, SchemaMismatchError


class _HasStore(Protocol):
    @property
    def store(self) -> ReadStore: ...


def outdated_message(store: ReadStore, names: list[str]) -> str:
    """The operator-facing explanation for ``names`` (projections with another version)."""
    stored = store.positions()
    lines = [
        f"projection {name!r}: tables built by schema version "
        f"{stored[name][1] if name in stored else '?'}, this code needs {SCHEMA_VERSIONS[name]}"
        for name in names
    ]
    command = "modelledger projections rebuild " + " ".join(names)
    return (
        "The projection tables are outdated:\n  "
        + "\n  ".join(lines)
        + f"\nRun: {command}\n"
        "(it rebuilds them aside while the old ones stay readable, then swaps them in)."
    )


def ensure_current_schema(container: _HasStore) -> None:
    """Raise ``SchemaMismatchError`` naming the rebuild command when any projection is outdated."""
    outdated = container.store.check_schema()
    if outdated:
        raise SchemaMismatchError(outdated_message(container.store, outdated))
