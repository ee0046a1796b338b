"""The one place the HTTP application is composed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request, Response, Router
from litestar.concurrency import sync_to_thread
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from api.auth import SECURITY_SCHEME, BearerAuthMiddleware, security_components
from api.controllers.admin import AdminController
from api.controllers.health import HealthController, MetricsController
from api.controllers.jobs import JobsController
from api.controllers.keys import KeysController
from api.controllers.models import ModelController
from api.controllers.usage import UsageController
from api.controllers.versions import VersionsController
from api.errors import EXCEPTION_HANDLERS
from api.group_commit import GroupCommitter
from api.openapi import check_query, complete_openapi
from api.rate_limit import rate_limit_middleware
from api.reads import Reads
from api.request_metrics import RequestMetricsMiddleware
from api.tokens import verifier_for
from api.ui.router import security_headers, template_config, ui_router
from api.uploads import UploadLimits
from api.v2.callers import ClientAddress
from api.v2.controller import predict_router, v2_router
from projections.usage import windows
from services.metering import Meter
from services.predictions import PredictionService
from serving.onnx_runtime import SessionCache
from serving.upstream import UpstreamClient

if TYPE_CHECKING:
    from services.container import Container


async def _allow_every_method(request: Request[Any, Any, Any]) -> Response[None] | None:
    """Answer OPTIONS with every method of the path; hold other requests to the documented
    query parameters (``check_query``).

    Litestar 2.25's automatic OPTIONS handler lists only the methods of the path's first
    handler group when a controller declares the path in several handlers. Asynchronous
    because it runs before every request: Litestar would run a synchronous one in a thread.
    """
    if request.method != "OPTIONS":
        check_query(request)
        return None
    paths = request.scope["route_handler"].paths
    methods = {m for r in request.app.routes if r.path in paths for m in getattr(r, "methods", ())}
    return Response(None, status_code=204, headers={"Allow": ", ".join(sorted(methods))})


def create_app(
    container: Container, *, group_commit: bool | None = None, close_container: bool = False
) -> Litestar:
    """The Litestar app over ``container``'s services (tests pass their own container).

    ``group_commit`` overrides ``settings.group_commit`` (off: one transaction per request).
    """
    settings = container.settings
    verifier = verifier_for(settings)
    committer = GroupCommitter(
        container.usage, max_queue=settings.group_commit_max_queue,
        enabled=settings.group_commit if group_commit is None else group_commit,
    )
    reads = Reads(container.store, settings)
    windows.SPAN_CACHE.resize(settings.window_cache_bytes)
    meter = Meter(
        settings.data_dir / "spool", container.usage, batch=settings.spool_ship_batch,
        shipping="own" if settings.ship_usage else "none",
    ) if settings.metering else None
    predictions = PredictionService(
        settings, store=container.store, artifacts=container.artifacts,
        sessions=SessionCache(settings.onnx_cache_bytes, settings.inference_threads),
        upstream=UpstreamClient(timeout=settings.upstream_timeout,
                                max_connections=settings.upstream_max_connections),
        meter=meter,
    )
    serving = {"ready": False}
    api = Router(
        "/api",
        route_handlers=[
            ModelController, VersionsController, KeysController, UsageController,
            AdminController, JobsController,
        ],
        # In this order: the rate limits count authenticated principals.
        middleware=[
            DefineMiddleware(BearerAuthMiddleware, verifier=verifier),
            *rate_limit_middleware(settings),
        ],
        security=[{SECURITY_SCHEME: []}],
    )

    async def startup() -> None:
        await reads.open()
        if meter is not None:
            # Opens this process's spool and ships what dead processes left in theirs.
            await sync_to_thread(meter.start)
        serving["ready"] = True
        # Staging files left by uploads of processes that died (the sweep job repeats it).
        await sync_to_thread(
            container.artifacts.sweep_staging, settings.upload_staging_max_age
        )

    async def shutdown() -> None:
        serving["ready"] = False
        await predictions.close()
        if meter is not None:
            await sync_to_thread(meter.stop)
        await committer.close()
        await reads.close()
        if close_container:
            container.close()

    app = Litestar(
        route_handlers=[
            api, HealthController, MetricsController,
            v2_router(settings.infer_max_body_bytes), predict_router(settings.infer_max_body_bytes),
            ui_router(container),
        ],
        template_config=template_config(),
        state=State({
            "container": container,
            "artifacts": container.artifacts,
            "group_commit": committer,
            "reads": reads,
            "uploads": UploadLimits.of(settings),
            "predictions": predictions,
            "predictions_ready": lambda: serving["ready"],
            "endpoint_verifier": verifier,
            "client_address": ClientAddress.of(settings.trusted_proxies),
        }),
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[RequestMetricsMiddleware(), security_headers],
        openapi_config=OpenAPIConfig(
            title="Model Ledger",
            version="0.1.0",
            description="Model registry and prediction-usage ledger. Every /api route needs a "
            "bearer JWT; health, metrics and this schema do not.",
            path="/schema",
            components=security_components(),
            render_plugins=[SwaggerRenderPlugin()],
        ),
        # Litestar's default logging config would add its own plain-text handler to the root
        # logger; logs go through configure_logging's JSON handler instead.
        logging_config=None,
        on_startup=[startup],
        on_shutdown=[shutdown],
        before_request=_allow_every_method,
    )
    complete_openapi(app.openapi_schema)
    return app
