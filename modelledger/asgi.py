"""The ASGI entry point: ``uvicorn modelledger.asgi:create_app --factory``, run in every worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from api.app import create_app as create_api
from config.logging_setup import configure_logging
from config.settings import load_settings
from modelledger.bootstrap import build
from projections.schema_check import ensure_current_schema

if TYPE_CHECKING:
    from litestar import Litestar


def create_app() -> Litestar:
    """The service for the settings in MODELLEDGER_*, with JSON logs.

    Refuses to start (naming the rebuild command) when the projection tables were built by
    another schema version.
    """
    settings = load_settings()
    configure_logging(settings.log_level, access_log=settings.access_log)
    container = build(settings)
    try:
        ensure_current_schema(container)
    except BaseException:
        container.close()
        raise
    return create_api(container, close_container=True)
