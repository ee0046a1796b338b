"""Reading the dashboard's urlencoded forms: one text value per field, bounded."""

from __future__ import annotations

from hmac import compare_digest
from typing import Any

from litestar.exceptions import PermissionDeniedException, ValidationException
from litestar.middleware.csrf import CSRF_SECRET_LENGTH, generate_csrf_hash

MAX_FIELD = 5_000  # characters: the longest field any form has (a model's description)


def form_text(form: Any, name: str, limit: int = MAX_FIELD) -> str:
    """The field's text ('' when absent); a repeated or over-long field is a 400."""
    try:
        values = form.getall(name)
    except KeyError:
        values = []
    if len(values) > 1:
        raise ValidationException(f"the field {name!r} is given more than once")
    value = values[0] if values else ""
    if not isinstance(value, str):
        raise ValidationException(f"the field {name!r} must be text")
    if len(value) > limit:
        raise ValidationException(f"the field {name!r} is longer than {limit} characters")
    return value


def check_csrf_query(request: Any, secret: str, cookie_name: str = "ml_csrf") -> None:
    """The CSRF check of a multipart form (a version's upload), made before its body is read.

    Litestar's middleware would parse the whole multipart body into memory to find the field,
    so that form names the token in its action's query (``?csrf=``) instead and is excluded
    from the middleware; the token is checked here the same way (double submit: equal to the
    cookie, HMAC valid). A token alone is useless without the HttpOnly cookie it matches.
    """
    given, cookie = request.query_params.get("csrf", ""), request.cookies.get(cookie_name, "")
    if not (_valid(given, secret) and _valid(cookie, secret)
            and compare_digest(given[:CSRF_SECRET_LENGTH], cookie[:CSRF_SECRET_LENGTH])):
        raise PermissionDeniedException("CSRF token verification failed")


def _valid(token: str, secret: str) -> bool:
    if len(token) <= CSRF_SECRET_LENGTH:
        return False
    expected = generate_csrf_hash(token=token[:CSRF_SECRET_LENGTH], secret=secret)
    return compare_digest(token[CSRF_SECRET_LENGTH:], expected)
