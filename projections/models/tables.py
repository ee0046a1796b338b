"""The ``models`` projection's table: one row per model (the list and the detail's metadata)."""

from __future__ import annotations

from projections.table import Table

MODEL_VIEW = Table(
    name="model_view",
    columns=(
        ("id", "uuid"),
        ("owner_id", "uuid"),
        ("name", "text"),
        ("description", "text"),
        ("framework", "text"),
        ("status", "text"),
        ("version", "int"),
        ("endpoint_url", "text"),
        ("endpoint_active", "bool"),
        ("artifact_filename", "text"),
        ("artifact_size_bytes", "int"),
        ("artifact_sha256", "text"),
        ("artifact_removed_at", "ts"),
        ("created_at", "ts"),
        ("updated_at", "ts"),
        ("deleted_at", "ts"),
    ),
    key=("id",),
    not_null=("owner_id", "name", "description", "framework", "status", "version",
              "endpoint_url", "endpoint_active", "created_at", "updated_at"),
    indexes=(
        ("owner_created", ("owner_id", "created_at", "id")),
        ("owner_updated", ("owner_id", "updated_at", "id")),
        ("owner_name", ("owner_id", "name", "id")),
    ),
)

SCHEMA_VERSION = 1
TABLES = (MODEL_VIEW,)
