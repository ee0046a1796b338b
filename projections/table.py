"""``Table``: a projection table described once; each backend renders it in its own dialect.

Logical column types: ``uuid``, ``text``, ``int``, ``bool``, ``ts`` (aware UTC datetime) and
``bytes``. A table set may carry a suffix (``__next``) while a rebuild builds it aside.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, logical type); key columns are NOT NULL
    key: tuple[str, ...]
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    not_null: tuple[str, ...] = ()
    # Columns the primary key's index also holds (PostgreSQL ``INCLUDE``): a read of these by
    # a range of keys is an index-only scan instead of a visit to one heap page per row.
    key_includes: tuple[str, ...] = ()

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def suffixed(self, suffix: str) -> Table:
        """The same table under ``name + suffix`` (a rebuild's tables aside)."""
        return replace(self, name=self.name + suffix) if suffix else self
