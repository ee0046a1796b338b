"""Every projection's tables and schema version: what the store creates, checks and swaps."""

from __future__ import annotations

from projections.models import tables as models_tables
from projections.usage import tables as usage_tables

PROJECTION_TABLES = {"models": models_tables.TABLES, "usage": usage_tables.TABLES}
# A projection's version is bumped when its tables or fold change: old tables must be rebuilt.
SCHEMA_VERSIONS = {"models": models_tables.SCHEMA_VERSION, "usage": usage_tables.SCHEMA_VERSION}
