"""The ``models`` projection's tables: one row per model (the list and the detail's metadata)
and one per API key (the keys list and the endpoint's key check)."""

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
        ("upstream_url", "text"),
        ("upstream_model", "text"),
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

API_KEYS = Table(
    name="api_keys",
    columns=(
        ("id", "uuid"),
        ("owner_id", "uuid"),
        ("name", "text"),
        ("models", "text"),  # a JSON list of model ids; NULL: every model of the owner
        ("secret_sha256", "text"),
        ("created_at", "ts"),
        ("revoked_at", "ts"),
        ("version", "int"),
    ),
    key=("id",),
    not_null=("owner_id", "name", "secret_sha256", "created_at", "version"),
    indexes=(("owner_created", ("owner_id", "created_at", "id")),),
)

# 2: model_view's upstream columns and the api_keys table.
SCHEMA_VERSION = 2
TABLES = (MODEL_VIEW, API_KEYS)
