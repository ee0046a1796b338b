"""What every page handler shares: the signed-in user, the page's frame, the browser's zone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.response import Template

from api.auth import principal_of
from api.tokens import SCOPE_ADMIN
from projections.usage import windows

if TYPE_CHECKING:
    from litestar import Request

    from api.tokens import Principal

TZ_COOKIE = "ml_tz"  # set by app.js to the browser's IANA zone


def user(request: Request[Any, Any, Any]) -> Principal:
    return principal_of(request)


def page(
    request: Request[Any, Any, Any], name: str, *, title: str, nav: str = "",
    status_code: int = 200, **context: Any,
) -> Template:
    """``name`` rendered in the dashboard's frame (navigation, sign-out, the user's name)."""
    who = request.scope.get("user")
    frame = {"title": title, "nav": nav, "signed_in": who is not None,
             "user_name": getattr(who, "name", "") or getattr(who, "subject", ""),
             "is_admin": who is not None and SCOPE_ADMIN in who.scopes}
    return Template(name, status_code=status_code, context={**frame, **context},
                    headers={"Cache-Control": "no-store"})


def browser_zone(request: Request[Any, Any, Any]) -> str:
    """The browser's time zone when the windows can use it (whole-hour offsets), else UTC."""
    given = request.cookies.get(TZ_COOKIE, "")
    return given if given in windows.ZONES else "UTC"
