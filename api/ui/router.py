"""The ``/ui`` router: sessions, CSRF, the Content-Security-Policy, error pages, static files.

Mounted by ``api.app.create_app``; each page group is a controller of its own module.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from litestar import Request, Response, Router, get
from litestar.concurrency import sync_to_thread
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import CacheControlHeader
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.middleware.csrf import CSRFMiddleware
from litestar.params import FromPath  # noqa: TC002 - read at run time
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from api.auth import SCOPES_OPT
from api.errors import EXCEPTION_HANDLERS, status_of
from api.tokens import resolve_secret
from api.ui import format as fmt
from api.ui.links import link_key
from api.ui.oidc import oidc_router
from api.ui.pages_auth import SignInController
from api.ui.pages_keys import KeysPage
from api.ui.pages_model import ModelPage
from api.ui.pages_models import ModelsPage
from api.ui.pages_usage import OperationsPage, UsagePage
from api.ui.pages_versions import VersionsPage
from api.ui.sessions import SESSION_COOKIE, UI_SCOPE_KEY, SessionStore, UiContext, is_https
from domain.errors import ModelLedgerError
from projections.usage.windows import WindowError

if TYPE_CHECKING:
    from jinja2 import Environment
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from services.container import Container

HERE = Path(__file__).parent
MAX_FORM_BYTES = 64 * 1024
PUBLIC_OPT = "ui_public"  # a page that needs no session (sign-in, static files)
# No inline script or style anywhere; the chart data travels in a data attribute, never run.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


def security_headers(app: ASGIApp) -> ASGIApp:
    """App-level middleware: the policy on every response under /ui, pages, static files and
    the not-found answer of a path no route matches alike."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not scope["path"].startswith("/ui"):
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    def register(engine: JinjaTemplateEngine) -> None:
        environment: Environment = engine.engine
        environment.filters.update(fmt.FILTERS)
        environment.autoescape = True

    return TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine,
                          engine_callback=register)


class _CSRF:
    """Litestar's double-submit CSRF check, with the cookie Secure on HTTPS requests."""

    def __init__(self, app: ASGIApp, secret: str, *, https_base: bool) -> None:
        self.https_base = https_base
        config = {"secret": secret, "cookie_name": "ml_csrf", "cookie_path": "/ui",
                  "cookie_httponly": True, "cookie_samesite": "lax"}
        self.plain = CSRFMiddleware(app, CSRFConfig(**config))  # type: ignore[arg-type]
        self.secure = CSRFMiddleware(app, CSRFConfig(**config, cookie_secure=True))  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self.secure if is_https(scope, https_base=self.https_base) else self.plain
        await chosen(scope, receive, send)


def _error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Errors as a page; another user's model is the same 404 as a missing one."""
    status = status_of(exc)
    if status >= 500:  # noqa: PLR2004
        EXCEPTION_HANDLERS[Exception](request, exc)  # logged as the API logs it
    message = {404: "Not found", 403: "Not allowed"}.get(status, "Something went wrong")
    detail = ""
    if isinstance(exc, (ModelLedgerError, WindowError)) and status < 500:  # noqa: PLR2004
        detail = "" if status == 404 else str(exc)  # noqa: PLR2004
    elif isinstance(exc, HTTPException) and status not in {404, 500}:
        detail = exc.detail
    return Template(
        "error.html", status_code=status,
        context={"status": status, "message": message, "detail": detail,
                 "signed_in": "user" in request.scope},
    )


@get("/{rest:path}", opt={PUBLIC_OPT: True})
async def not_found(rest: FromPath[str]) -> None:
    """Any other path under /ui: the dashboard's 404 page (with its policy), not the API's."""
    del rest
    raise NotFoundException


def ui_router(container: Container) -> Router:
    secret = resolve_secret(container.settings)
    csrf_secret = hmac.new(secret.encode(), b"modelledger ui csrf", hashlib.sha256).hexdigest()
    https_base = container.settings.base_url.lower().startswith("https://")
    context = UiContext(SessionStore(container.store), link_key(secret), csrf_secret,
                        https_base)

    async def load_session(request: Request[Any, Any, Any]) -> Response[Any] | None:
        request.scope[UI_SCOPE_KEY] = context  # type: ignore[literal-required]
        opt = request.route_handler.opt
        if opt.get(PUBLIC_OPT):
            return None
        sid = request.cookies.get(SESSION_COOKIE)
        session = None if not sid else await sync_to_thread(context.sessions.find, sid)
        if session is None:
            if request.method != "GET":
                raise PermissionDeniedException("sign in first")
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return Redirect(f"/ui/login?next={quote(target, safe='')}", status_code=303)
        request.scope["user"] = session.principal()
        needed = opt.get(SCOPES_OPT)
        if needed is not None and not session.scopes & needed:
            raise NotFoundException  # a page for admins only is not there for others
        return None

    static = create_static_files_router(
        path="/static", directories=[HERE / "static"], opt={PUBLIC_OPT: True},
        cache_control=CacheControlHeader(max_age=3600),
        include_in_schema=False,
    )
    return Router(
        "/ui",
        route_handlers=[
            SignInController, ModelsPage, ModelPage, VersionsPage, KeysPage, UsagePage,
            OperationsPage, static,
            not_found,
            oidc_router(container.settings),
        ],
        before_request=load_session,
        middleware=[lambda app: _CSRF(app, csrf_secret, https_base=https_base)],
        # Every key the app maps too: the most specific class of any layer wins.
        exception_handlers=dict.fromkeys(
            (HTTPException, ModelLedgerError, WindowError, Exception), _error_page),
        include_in_schema=False,
        # The largest form is a pasted token or a description: a bigger body is a 413.
        request_max_body_size=MAX_FORM_BYTES,
    )
