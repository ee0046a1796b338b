"""A model's versions on its page: upload, promote, roll back, a canary split, removal.

The listing and the comparison are part of the model's page (``pages_model``); these are the
forms' handlers. Serving changes go through ``ModelService.update(serving=...)``, as
``PUT /api/models/{id}`` with ``serving`` does.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, post
from litestar.concurrency import sync_to_thread
from litestar.params import FromPath
from litestar.response import Redirect

from api.deps import actor, artifacts, container
from api.ui.forms import check_csrf_query, form_text
from api.ui.pages_model import refused
from api.ui.sessions import ui_context
from api.uploads import read_version_upload
from domain.errors import (
    ModelDeletedError,
    ModelLedgerError,
    ValidationError,
    VersionServingError,
)

ModelId = FromPath[UUID]
EXCLUDE_FROM_CSRF = {"exclude_from_csrf": True}  # checked by ``check_csrf_query`` instead


def _number(form: Any, name: str) -> int:
    text = form_text(form, name, 10)
    if not text.isdigit() or not 1 <= int(text) <= 2**31 - 1:
        raise ValidationError(name, "must be a version number")
    return int(text)


def serving_of_form(form: Any) -> list[tuple[int, int]]:
    """``promote`` (also a rollback: any one version at 100 %) or ``canary``: the canary's
    share in percent, the rest to the stable version."""
    mode = form_text(form, "mode", 20)
    if mode == "promote":
        return [(_number(form, "version"), 100)]
    if mode == "canary":
        stable, canary = _number(form, "stable"), _number(form, "canary")
        share = form_text(form, "percent", 3)
        if not share.isdigit() or not 1 <= int(share) <= 99:  # noqa: PLR2004
            raise ValidationError("percent", "must be a whole percentage from 1 to 99")
        if stable == canary:
            raise ValidationError("canary", "must be another version than the stable one")
        return [(stable, 100 - int(share)), (canary, int(share))]
    raise ValidationError("mode", "must be promote or canary")


class VersionsPage(Controller):
    path = "/models/{model_id:uuid}/versions"

    @post("/", status_code=303, request_max_body_size=None, opt=EXCLUDE_FROM_CSRF)
    async def upload(self, request: Request[Any, Any, Any], model_id: ModelId) -> Response[Any]:
        # Before a byte of the body is read; the artifact store bounds the file's size.
        check_csrf_query(request, ui_context(request).csrf_secret)
        who = actor(request)
        c = container(request)
        await sync_to_thread(c.models.get, who.user_id, model_id)  # another's: 404 first
        given = await read_version_upload(request, artifacts(request))
        try:
            view = await sync_to_thread(lambda: c.models.upload_version(
                who, model_id, given.upload, filename=given.filename, notes=given.notes))
        except ModelLedgerError as error:
            given.upload.discard()
            return await refused(request, model_id, error)
        except BaseException:
            given.upload.discard()
            raise
        return Redirect(f"/ui/models/{model_id}?saved=version-{view.number}#versions",
                        status_code=303)

    @post("/serving", status_code=303)
    async def serving(self, request: Request[Any, Any, Any], model_id: ModelId) -> Response[Any]:
        form = await request.form()
        who = actor(request)
        try:
            split = serving_of_form(form)
            await sync_to_thread(lambda: container(request).models.update(
                who, model_id, serving=split))
        except (ValidationError, ModelDeletedError) as error:
            return await refused(request, model_id, error)
        return Redirect(f"/ui/models/{model_id}?saved=serving#versions", status_code=303)

    @post("/{number:int}/remove", status_code=303)
    async def remove(
        self, request: Request[Any, Any, Any], model_id: ModelId, number: FromPath[int]
    ) -> Response[Any]:
        who = actor(request)
        try:
            await sync_to_thread(lambda: container(request).models.remove_version(
                who, model_id, number))
        except (VersionServingError, ModelDeletedError) as error:
            return await refused(request, model_id, error)
        return Redirect(f"/ui/models/{model_id}?saved=removed#versions", status_code=303)
