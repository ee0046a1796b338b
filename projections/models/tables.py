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
        # A JSON list of [version, weight]; NULL: the default, version 1 alone (once it exists).
        ("serving", "text"),
        ("latest_version", "int"),  # 0: no version yet
    ),
    key=("id",),
    not_null=("owner_id", "name", "description", "framework", "status", "version",
              "endpoint_url", "endpoint_active", "created_at", "updated_at", "latest_version"),
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

# Each version of each model: its file, who uploaded it, when, and whether it was removed.
MODEL_VERSIONS = Table(
    name="model_versions",
    columns=(
        ("model_id", "uuid"),
        ("number", "int"),
        ("filename", "text"),
        ("size_bytes", "int"),
        ("sha256", "text"),
        ("notes", "text"),
        ("created_at", "ts"),
        ("created_by", "text"),
        ("removed_at", "ts"),
    ),
    key=("model_id", "number"),
    not_null=("filename", "size_bytes", "sha256", "notes", "created_at", "created_by"),
)

# 2: model_view's upstream columns and the api_keys table.
# 3: model versions: model_view's serving and latest_version, the model_versions table.
SCHEMA_VERSION = 3
TABLES = (MODEL_VIEW, API_KEYS, MODEL_VERSIONS)
