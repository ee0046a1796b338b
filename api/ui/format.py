"""Formatting helpers for the templates (which stay logic-free): Jinja filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

NONE = "\u2013"  # an en dash: no value


def number(value: Any) -> str:
    """1234567 -> '1,234,567'; None -> an en dash."""
    return NONE if value is None else f"{value:,}"


def ms(value: float | None) -> str:
    if value is None:
        return NONE
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"  # noqa: PLR2004


def percent(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f} %"


def when(value: datetime | str | None) -> str:
    """A moment in UTC, to the minute (the page's script shows it in the browser's zone)."""
    if value is None:
        return NONE
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | str | None) -> str:
    if value is None:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def size(value: int | None) -> str:
    if value is None:
        return NONE
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":  # noqa: PLR2004
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024  # type: ignore[assignment]
    return str(value)  # pragma: no cover - the loop returns


def serving(split: Sequence[Sequence[int]]) -> str:
    """((1, 90), (2, 10)) -> 'v1 90 %, v2 10 %'; one version: 'v2'; none: an en dash."""
    if not split:
        return NONE
    if len(split) == 1:
        return f"v{split[0][0]}"
    return ", ".join(f"v{version} {weight} %" for version, weight in split)


FILTERS = {"number": number, "ms": ms, "percent": percent, "when": when, "iso": iso,
           "size": size}
