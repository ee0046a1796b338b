"""Reading the dashboard's urlencoded forms: one text value per field, bounded."""

from __future__ import annotations

from typing import Any

from litestar.exceptions import ValidationException

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
