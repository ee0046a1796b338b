"""Sign-in (a bearer token, or a one-time link from ``modelledger login-url``) and sign-out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.exceptions import NotAuthorizedException
from litestar.params import QueryParameter
from litestar.response import Template

from api.deps import container
from api.tokens import SCOPE_ADMIN, SCOPE_MODELS, TokenVerifier
from api.ui.forms import form_text
from api.ui.links import verify_link_token
from api.ui.sessions import begin_session, end_session, safe_next, ui_context

if TYPE_CHECKING:
    from api.tokens import Principal

PUBLIC = {"ui_public": True}
DASHBOARD_SCOPES = frozenset({SCOPE_MODELS, SCOPE_ADMIN})
NO_STORE = {"Cache-Control": "no-store"}
INVALID_LINK = "This sign-in link is invalid or has expired."
MAX_TOKEN = 16_384  # bytes of a pasted token; more is not a token this service issues
NextParam = Annotated[str | None, QueryParameter(name="next", max_length=2000, required=False)]
TokenParam = Annotated[
    str | None, QueryParameter(name="token", max_length=MAX_TOKEN, required=False)
]


def _sign_in_page(
    request: Request[Any, Any, Any], next_path: str, error: str = "", status: int = 200
) -> Template:
    # With an identity provider configured, its "Sign in with ..." button too (imported here:
    # api.ui.oidc imports this module).
    from api.ui.oidc import sign_in_button  # noqa: PLC0415

    button = sign_in_button(container(request).settings, next_path)
    return Template("login.html", status_code=status, headers=NO_STORE,
                    context={"next": safe_next(next_path), "error": error, "title": "Sign in",
                             **button})


async def _verify(request: Request[Any, Any, Any], token: str) -> Principal:
    verifier: TokenVerifier = request.app.state["endpoint_verifier"]  # the API's own verifier
    if verifier.fetches_keys:
        return await sync_to_thread(verifier.verify, token)
    return verifier.verify(token)


class SignInController(Controller):
    path = "/"
    opt = PUBLIC

    @get("/login", name="ui-login")
    async def sign_in_form(
        self, request: Request[Any, Any, Any], next_: NextParam = None
    ) -> Template:
        return _sign_in_page(request, next_ or "/ui/")

    @post("/login", status_code=303)
    async def sign_in(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = await request.form()
        token, next_path = form_text(form, "token", MAX_TOKEN).strip(), form_text(form, "next")
        if not token:
            return _sign_in_page(request, next_path, "Paste a token.", 400)
        try:
            principal = await _verify(request, token)
        except NotAuthorizedException as error:
            refused = f"This token is not accepted: {error.detail}."
            return _sign_in_page(request, next_path, refused, 401)
        scopes = principal.scopes & DASHBOARD_SCOPES
        if not scopes:
            return _sign_in_page(request, next_path, "This token has neither the 'models' nor the "
                                 "'admin' scope.", 403)
        return await begin_session(request, subject=principal.subject, issuer=principal.issuer,
                                   scopes=scopes, next_path=next_path)

    @get("/login/link")
    async def link_form(
        self, request: Request[Any, Any, Any], token: TokenParam = None
    ) -> Template:
        # Shown, not used: a link preview or prefetch must not spend the one-time link.
        claims = None if not token else verify_link_token(ui_context(request).link_key, token)
        if claims is None:
            return _sign_in_page(request, "/ui/", INVALID_LINK, 400)
        # The page holds the link's token: no cache may keep it.
        return Template("link.html", headers=NO_STORE,
                        context={"token": token, "subject": claims.subject, "title": "Sign in"})

    @post("/login/link", status_code=303)
    async def use_link(self, request: Request[Any, Any, Any]) -> Response[Any]:
        form = await request.form()
        context = ui_context(request)
        claims = verify_link_token(context.link_key, form_text(form, "token", MAX_TOKEN))
        if claims is None:
            return _sign_in_page(request, "/ui/", INVALID_LINK, 400)
        if not await sync_to_thread(context.sessions.use_link, claims.jti, claims.expires_at):
            return _sign_in_page(request, "/ui/", "This sign-in link has been used already.", 400)
        return await begin_session(request, subject=claims.subject, issuer=claims.issuer,
                                   scopes=claims.scopes & DASHBOARD_SCOPES)

    @post("/logout", status_code=303, opt={"ui_public": False})
    async def sign_out(self, request: Request[Any, Any, Any]) -> Response[Any]:
        return await end_session(request)
