"""The ``usage`` projection's tables: statistics per model and owner by hour, UTC day, all time,
and each API key's request count."""

from __future__ import annotations

from projections.table import Table

STATS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("requests", "int"),
    ("successes", "int"),
    ("failures", "int"),
    ("rejected", "int"),
    ("total_us", "int"),
    ("min_us", "int"),
    ("max_us", "int"),
    ("input_bytes", "int"),
    ("output_bytes", "int"),
    ("histogram", "bytes"),
    ("last_at", "ts"),
    # The histogram buckets of p50, p95 and p99 (``figures.percentile_buckets``): derived from
    # ``histogram`` when the row is written, so reading one row decodes no histogram.
    ("p50_bucket", "int"),
    ("p95_bucket", "int"),
    ("p99_bucket", "int"),
)

# What a window answered by one stored row reads: all but the histogram and ``last_at``.
ROW_READ = tuple(name for name, _ in STATS_COLUMNS if name not in {"histogram", "last_at"})

USAGE_MODEL_HOURLY = Table(
    name="usage_model_hourly",
    columns=(("model_id", "uuid"), ("hour", "int"), *STATS_COLUMNS),
    key=("model_id", "hour"),
)
USAGE_OWNER_HOURLY = Table(
    name="usage_owner_hourly",
    columns=(("owner_id", "uuid"), ("hour", "int"), *STATS_COLUMNS),
    key=("owner_id", "hour"),
)
# Whole UTC days (``day`` = hour index // 24); the key index holds what a series reads
# (ARCHITECTURE.md, "One stored row per window").
USAGE_MODEL_DAILY = Table(
    name="usage_model_daily",
    columns=(("model_id", "uuid"), ("day", "int"), *STATS_COLUMNS),
    key=("model_id", "day"),
    key_includes=ROW_READ,
)
USAGE_OWNER_DAILY = Table(
    name="usage_owner_daily",
    columns=(("owner_id", "uuid"), ("day", "int"), *STATS_COLUMNS),
    key=("owner_id", "day"),
)
USAGE_MODEL_TOTALS = Table(
    name="usage_model_totals",
    columns=(("model_id", "uuid"), ("owner_id", "uuid"), *STATS_COLUMNS),
    key=("model_id",),
    indexes=(("owner", ("owner_id",)),),
)
USAGE_OWNER_TOTALS = Table(
    name="usage_owner_totals",
    columns=(("owner_id", "uuid"), *STATS_COLUMNS),
    key=("owner_id",),
)

# Per model version (``model_version``: the version that served; 1 for usage recorded before
# versions existed): hours, UTC days and all time, for ``version=``, ``group_by=version``, the
# detail's breakdown and the rollout comparison. The totals store percentile buckets too: a
# detail shows every version's percentiles from one row each.
USAGE_VERSION_HOURLY = Table(
    name="usage_version_hourly",
    columns=(("model_id", "uuid"), ("model_version", "int"), ("hour", "int"), *STATS_COLUMNS),
    key=("model_id", "model_version", "hour"),
)
USAGE_VERSION_DAILY = Table(
    name="usage_version_daily",
    columns=(("model_id", "uuid"), ("model_version", "int"), ("day", "int"), *STATS_COLUMNS),
    key=("model_id", "model_version", "day"),
)
USAGE_VERSION_TOTALS = Table(
    name="usage_version_totals",
    columns=(("model_id", "uuid"), ("model_version", "int"), *STATS_COLUMNS),
    key=("model_id", "model_version"),
)

# Requests each API key made (metered by the service itself) and when it was last used.
API_KEY_USAGE = Table(
    name="api_key_usage",
    columns=(("api_key_id", "uuid"), ("requests", "int"), ("last_used_at", "ts")),
    key=("api_key_id",),
    not_null=("requests", "last_used_at"),
)

# 4: api_key_usage. Roll-ups' per-key counts (``UsageRollup.Recorded.api_keys``) need no new
# version: a roll-up stored before them decodes with none and folds as it did.
# 5: the per-version tables.
SCHEMA_VERSION = 5
TABLES = (
    USAGE_MODEL_HOURLY, USAGE_OWNER_HOURLY, USAGE_MODEL_DAILY, USAGE_OWNER_DAILY,
    USAGE_MODEL_TOTALS, USAGE_OWNER_TOTALS, API_KEY_USAGE,
    USAGE_VERSION_HOURLY, USAGE_VERSION_DAILY, USAGE_VERSION_TOTALS,
)

STATS_NAMES: tuple[str, ...] = tuple(name for name, _ in STATS_COLUMNS)
