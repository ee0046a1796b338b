"""The keys page: create (the secret shown once), list with per-key usage, revoke."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.concurrency import sync_to_thread
from litestar.params import FromPath  # noqa: TC002 - read at run time
from litestar.response import Redirect, Template

from api.deps import actor, container, reads
from api.errors import status_of
from api.ui.common import page, user
from api.ui.forms import form_text
from domain.api_key import KeyLimitError
from domain.errors import ValidationError

ALL_MODELS = "all"


async def _keys_page(
    request: Request[Any, Any, Any], status_code: int = 200, **extra: Any
) -> Template:
    owner = user(request).user_id
    keys = await sync_to_thread(container(request).keys.get_keys, owner)
    models, _ = await reads(request).list_models(owner, limit=100, sort="name")
    names = {row["id"]: row["name"] for row in models}
    shown = [{"id": str(k.id), "name": k.name, "requests": k.requests,
              "created_at": k.created_at, "last_used_at": k.last_used_at,
              "models": "all models" if k.models is None
              else ", ".join(names.get(m, str(m)) for m in k.models)} for k in keys]
    choices = [{"id": str(row["id"]), "name": row["name"]} for row in models]
    return page(request, "keys.html", title="API keys", nav="keys", keys=shown,
                choices=choices, status_code=status_code, **extra)


class KeysPage(Controller):
    path = "/keys"

    @get("/", name="ui-keys")
    async def keys(self, request: Request[Any, Any, Any]) -> Template:
        return await _keys_page(request)

    @post("/", status_code=200)
    async def create(self, request: Request[Any, Any, Any]) -> Template:
        form = await request.form()
        name, scope = form_text(form, "name", 200).strip(), form_text(form, "model", 40)
        try:
            models = None if scope in {"", ALL_MODELS} else [UUID(scope)]
        except ValueError:
            raise ValidationError("model", "choose one of your models or all") from None
        who = actor(request)
        try:
            view, text = await sync_to_thread(
                lambda: container(request).keys.create(who.user_id, name, models, who.who()))
        except (ValidationError, KeyLimitError) as error:
            return await _keys_page(request, error=str(error), status_code=status_of(error))
        # Shown in this answer only (no-store): the service keeps only its hash.
        return await _keys_page(request, created={"name": view.name, "secret": text})

    @post("/{key_id:uuid}/revoke", status_code=303)
    async def revoke(self, request: Request[Any, Any, Any],
                     key_id: FromPath[UUID]) -> Response[Any]:
        who = actor(request)
        await sync_to_thread(lambda: container(request).keys.revoke(who.user_id, key_id,
                                                                     who.who()))
        return Redirect("/ui/keys", status_code=303)
