"""The charts' range (24 h, 7, 30, 90 days or custom) and the series JSON the page embeds.

The page embeds exactly the API's buckets (``presenters.bucket`` over the same windows) in a
JSON block; ``static/charts.js`` draws them with uPlot, in the browser's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from litestar.params import QueryParameter

from projections.usage import windows
from projections.usage.windows import WindowError

if TYPE_CHECKING:
    from api.schemas import UsageBucket

Range = Literal["24h", "7d", "30d", "90d", "custom"]
Bucket = Literal["hour", "day", "week", "month"]
SPANS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30),
         "90d": timedelta(days=90)}
DEFAULT_BUCKET = {"24h": "hour", "7d": "day", "30d": "day", "90d": "day", "custom": "day"}
RANGE_LABELS = {"24h": "24 hours", "7d": "7 days", "30d": "30 days", "90d": "90 days",
                "custom": "Custom"}
RangeParam = Annotated[Range, QueryParameter(name="range")]
BucketParam = Annotated[Bucket | None, QueryParameter(name="bucket", required=False)]
DayParam = Annotated[str | None, QueryParameter(name="from", max_length=10, required=False,
                                           pattern=r"^(\d{4}-\d{2}-\d{2})?$")]
ToDayParam = Annotated[str | None, QueryParameter(name="to", max_length=10, required=False,
                                             pattern=r"^(\d{4}-\d{2}-\d{2})?$")]


@dataclass(frozen=True)
class ChartRange:
    range: str
    bucket: str
    tz: str
    start: datetime
    end: datetime

    @property
    def from_text(self) -> str:
        return _iso(self.start)

    @property
    def to_text(self) -> str:
        return _iso(self.end)

    def form(self) -> dict[str, str]:
        zone = windows.zone(self.tz)
        return {"range": self.range, "bucket": self.bucket,
                "from": self.start.astimezone(zone).date().isoformat(),
                "to": (self.end.astimezone(zone) - timedelta(seconds=1)).date().isoformat()}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def chart_range(
    chosen: str, bucket: str | None, tz: str, *, first_day: str | None = None,
    last_day: str | None = None, now: datetime | None = None,
) -> ChartRange:
    """The moments a range covers; custom ranges are whole days in the browser's zone."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    window = bucket or DEFAULT_BUCKET[chosen]
    if chosen != "custom":
        return ChartRange(chosen, window, tz, now - SPANS[chosen], now)
    zone = windows.zone(tz)
    try:
        first = date.fromisoformat(first_day or "")
        last = date.fromisoformat(last_day or "")
    except ValueError:
        raise WindowError("from", "give both days of a custom range, e.g. 2026-11-01") from None
    if last < first:
        raise WindowError("from", "must not be after 'to'")
    start = datetime.combine(first, time(), zone).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), zone).astimezone(UTC)
    return ChartRange(chosen, window, tz, start, end)


def series_json(buckets: list[UsageBucket]) -> str:
    """The buckets as columns (uPlot's shape): start in epoch seconds, then each figure."""
    columns = {
        "start": [int(b.start.timestamp()) for b in buckets],
        "successes": [b.successes for b in buckets],
        "failures": [b.failures for b in buckets],
        "p50": [b.p50_response_ms for b in buckets],
        "p95": [b.p95_response_ms for b in buckets],
        "p99": [b.p99_response_ms for b in buckets],
        "success_rate": [b.success_rate for b in buckets],
    }
    return msgspec.json.encode(columns).decode()
