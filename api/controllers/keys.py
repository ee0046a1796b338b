"""``/api/keys``: create (the key's text shown once), list the caller's live keys, revoke."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from api import presenters
from api.auth import requires
from api.deps import ApiRequest, actor, container, principal
from api.errors import PROBLEM_JSON, problem, problem_responses
from api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList, Problem, StrictBody
from api.tokens import SCOPE_MODELS
from domain.api_key import KeyLimitError, KeyNotFoundError

KeyId = FromPath[UUID]
# The answer holds a secret: no cache along the way may keep it.
_NO_STORE = {"Cache-Control": "no-store"}


def _key_not_found(_: Request[Any, Any, Any], __: KeyNotFoundError) -> Response[Problem]:
    return problem(404, "API key not found")


def _key_limit(_: Request[Any, Any, Any], exc: KeyLimitError) -> Response[Problem]:
    return problem(409, str(exc))


_NO_SUCH_KEY = ResponseSpec(
    data_container=Problem, media_type=PROBLEM_JSON, generate_examples=False,
    description="No such key (another user's key answers the same)",
)
_AT_THE_LIMIT = ResponseSpec(
    data_container=Problem, media_type=PROBLEM_JSON, generate_examples=False,
    description="The caller holds as many live keys as allowed",
)


class KeysController(Controller):
    path = "/keys"
    tags = ["keys"]  # noqa: RUF012 - Litestar's class attribute
    opt = requires(SCOPE_MODELS)
    exception_handlers = {  # noqa: RUF012 - Litestar's class attribute
        KeyNotFoundError: _key_not_found,
        KeyLimitError: _key_limit,
    }

    @post(
        "/",
        operation_id="createApiKey",
        summary="Create a key for the caller's endpoints; its text is shown in this answer only",
        sync_to_thread=True,
        dto=StrictBody[ApiKeyCreate],
        return_dto=None,
        # 404: a model named is not the caller's (or is deleted).
        responses={**problem_responses(400, 401, 403, 404, 422), 409: _AT_THE_LIMIT},
    )
    def create_key(
        self, request: ApiRequest, data: JSONBody[ApiKeyCreate]
    ) -> Response[ApiKeyCreated]:
        who = actor(request)
        view, text = container(request).keys.create(who.user_id, data.name, data.models, who.who())
        return Response(presenters.key_created(view, text), status_code=201, headers=_NO_STORE)

    @get(
        "/",
        operation_id="listApiKeys",
        summary="The caller's live keys (never their text), with requests and last use",
        sync_to_thread=True,
        responses=problem_responses(400, 401, 403),
    )
    def list_keys(self, request: ApiRequest) -> ApiKeyList:
        keys = container(request).keys.get_keys(principal(request).user_id)
        return ApiKeyList([presenters.key(view) for view in keys])

    @delete(
        "/{key_id:str}",
        operation_id="revokeApiKey",
        summary="Revoke a key: every process refuses it within 2 seconds (again: no change)",
        sync_to_thread=True,
        responses={**problem_responses(400, 401, 403), 404: _NO_SUCH_KEY},
    )
    def revoke_key(self, request: ApiRequest, key_id: KeyId) -> None:
        who = actor(request)
        container(request).keys.revoke(who.user_id, key_id, who.who())
