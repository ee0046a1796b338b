"""A realistic demo data set, loaded through the real services (``modelledger demo``).

Three users with three or four models each and 90 days of usage: a daily curve peaking in
the afternoon (UTC), quieter weekends, slow growth, a small failure rate and one incident per
user (a few hours of errors and slow responses). Some models were later made inactive or
deleted. Ids and request ids are deterministic, so loading twice stores nothing new.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from domain.model import ModelStatus
from projections.models import queries
from services.models import Actor
from services.usage import UsageRecord, Writer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from config.settings import Settings
    from services.container import Container

_NAMESPACE = uuid.UUID("0d7c2f4e-3a51-4b8e-9f0a-5d2c6e1b7a93")
BATCH = 20_000
GATEWAY_SUBJECT = "gateway"
ERRORS = ((500, "internal error: CUDA out of memory"), (503, "model replica unavailable"),
          (504, "upstream timeout"), (422, "invalid input tensor shape"))


@dataclass(frozen=True)
class DemoModel:
    name: str
    framework: str
    description: str
    per_day: int  # requests on an average weekday at the start
    latency_ms: float  # median response time
    failure_rate: float
    retire: str | None = None  # "inactive" or "deleted"
    retire_day: int = 0  # days before now when its traffic stopped
    weekend: float = 0.45  # weekend traffic relative to weekdays
    serves: bool = False  # uploaded with a real ONNX artifact: its endpoint answers


@dataclass(frozen=True)
class DemoUser:
    subject: str
    user_id: uuid.UUID
    models: tuple[DemoModel, ...]


def _user_id(subject: str, issuer: str) -> uuid.UUID:
    from api.tokens import user_id_of  # noqa: PLC0415 - the API's subject -> user id mapping

    return user_id_of(subject, issuer)


def demo_tokens(
    settings: Settings, users: list[DemoUser], ttl: timedelta
) -> list[tuple[str, str, str]]:
    """(name, token, what it may do) for each demo user, the gateway and an operator.

    The gateway's token carries the all-tenants grant: it records usage for every user's
    models, as the inference gateway in front of them all does.
    """
    from api.tokens import (  # noqa: PLC0415 - the API owns token issuing
        SCOPE_ADMIN,
        SCOPE_MODELS,
        SCOPE_USAGE_WRITE,
        UsageGrant,
        issue_token,
        resolve_secret,
    )

    secret = resolve_secret(settings)

    def token(subject: str, scope: str, grant: UsageGrant | None = None) -> str:
        return issue_token(secret, subject, [scope], ttl, issuer=settings.jwt_issuer,
                           audience=settings.jwt_audience, grant=grant)

    tokens = [(user.subject.upper(), token(user.subject, SCOPE_MODELS), "models: their own")
              for user in users]
    tokens.append(("GATEWAY", token(GATEWAY_SUBJECT, SCOPE_USAGE_WRITE,
                                    UsageGrant(all_tenants=True)),
                   "usage:write for all tenants: records usage for any model"))
    tokens.append(("ADMIN", token("ops", SCOPE_ADMIN), "admin: operations endpoints"))
    return tokens


def demo_users(issuer: str = "") -> list[DemoUser]:
    """The demo's users, as subjects of ``issuer`` (the issuer of the tokens they get)."""

    def _user(subject: str, *models: DemoModel) -> DemoUser:
        return DemoUser(subject, _user_id(subject, issuer), models)

    return [
        _user("alice",
              DemoModel("fraud-detector", "onnx", "Card fraud scores (a live ONNX endpoint)",
                        1400, 18, 0.01, serves=True),
              DemoModel("churn-predictor", "scikit-learn", "Monthly churn risk", 500, 9, 0.005),
              DemoModel("image-tagger", "pytorch", "Product photo tags", 700, 120, 0.03),
              DemoModel("legacy-ranker", "scikit-learn", "Search ranking v1", 400, 30, 0.02,
                        retire="inactive", retire_day=25)),
        _user("bob",
              DemoModel("sentiment-bert", "transformers", "Review sentiment", 900, 60, 0.015),
              DemoModel("summarizer-t5", "transformers", "Ticket summaries", 250, 420, 0.04),
              DemoModel("spam-filter-v1", "scikit-learn", "Replaced by sentiment-bert", 600, 6,
                        0.01, retire="deleted", retire_day=45)),
        _user("carol",
              DemoModel("demand-forecast", "prophet", "Nightly store demand", 300, 250, 0.02,
                        weekend=0.1),
              DemoModel("recommender", "tensorflow", "Home page recommendations", 1100, 35, 0.01,
                        weekend=1.3),
              DemoModel("ocr-lite", "onnx", "Receipt OCR", 350, 90, 0.025,
                        retire="inactive", retire_day=10)),
    ]


FEATURES = 20
CANARY_DAYS = 7


def fraud_model_onnx(bias: float = -0.5) -> bytes:
    """A logistic regression over ``FEATURES`` inputs as an ONNX graph (fixed weights):
    input ``X`` FP32 [n, 20], output ``probability`` FP32 [n, 1]."""
    import numpy as np  # noqa: PLC0415 - only the demo builds a model
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    weights = np.linspace(-1.0, 1.0, FEATURES, dtype=np.float32).reshape(FEATURES, 1)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["logit"]),
         helper.make_node("Add", ["logit", "B"], ["shifted"]),
         helper.make_node("Sigmoid", ["shifted"], ["probability"])],
        "fraud-scorer",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", FEATURES])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["n", 1])],
        initializer=[numpy_helper.from_array(weights, "W"),
                     numpy_helper.from_array(np.array([bias], dtype=np.float32), "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # one every onnxruntime since 1.10 reads
    return bytes(model.SerializeToString())


def model_id_of(user: DemoUser, model: DemoModel) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{user.subject}/{model.name}")


@dataclass
class DemoResult:
    users: list[DemoUser]
    model_ids: dict[str, uuid.UUID] = field(default_factory=dict)  # "user/model" -> id
    accepted: int = 0
    duplicates: int = 0
    failures: int = 0


def _hour_weight(hour: int) -> float:
    """Traffic through the day: a night floor and an afternoon peak around 14:00 UTC."""
    return 0.2 + math.exp(-((hour - 14) ** 2) / 18)


_DAY_WEIGHT = sum(_hour_weight(h) for h in range(24))


def _usage(
    rng: random.Random, model_id: uuid.UUID, model: DemoModel, *, days: int, scale: float,
    today: datetime, incident: tuple[int, int],
) -> Iterator[UsageRecord]:
    serial = 0
    for day in range(days, model.retire_day, -1):
        start = today - timedelta(days=day)
        weekday_factor = model.weekend if start.weekday() >= 5 else 1.0  # noqa: PLR2004
        growth = 1 + 0.006 * (days - day)
        for hour in range(24):
            expected = (model.per_day * scale * growth * weekday_factor
                        * _hour_weight(hour) / _DAY_WEIGHT)
            count = max(0, round(rng.gauss(expected, math.sqrt(expected) + 0.5)))
            in_incident = (day, hour // 3) == incident
            failure_rate = 0.35 if in_incident else model.failure_rate
            load = 1 + 0.4 * _hour_weight(hour) + (2.0 if in_incident else 0.0)
            for _ in range(count):
                serial += 1
                # The serving model's canary: version 2 takes every tenth request of the last
                # week, a little slower and failing twice as often (the rollout view shows it).
                version = 2 if model.serves and day <= CANARY_DAYS and serial % 10 == 0 else 1
                slower = 1.15 if version == 2 else 1.0  # noqa: PLR2004
                success = rng.random() >= failure_rate * (2 if version == 2 else 1)  # noqa: PLR2004
                status, error = (200, None) if success else rng.choice(ERRORS)
                yield UsageRecord(
                    model_id=model_id,
                    request_id=f"demo-{serial:08d}",
                    occurred_at=start + timedelta(hours=hour, seconds=rng.random() * 3600),
                    response_time_ms=round(min(
                        60_000.0, model.latency_ms * load * slower * rng.lognormvariate(0, 0.35)
                    ), 2),
                    input_bytes=int(2_000 * rng.lognormvariate(0, 0.8)),
                    output_bytes=int(600 * rng.lognormvariate(0, 0.6)),
                    success=success,
                    status_code=status,
                    error=error,
                    user_agent="demo-gateway/1.0",
                    model_version=version,
                )


def _register(
    container: Container, result: DemoResult, rng: random.Random, days: int
) -> list[tuple[DemoUser, DemoModel, uuid.UUID, tuple[int, int], bool]]:
    """Register missing models; plan (user, model, id, incident, retire now) for each."""
    plan = []
    for user in result.users:
        actor = Actor(user.user_id, "demo", subject=user.subject,
                      issuer=container.settings.jwt_issuer)
        incident = (rng.randrange(max(1, days // 3), days + 1), rng.randrange(8))
        for model in user.models:
            model_id = model_id_of(user, model)
            result.model_ids[f"{user.subject}/{model.name}"] = model_id
            existing = queries.get_model(container.store, user.user_id, model_id)
            if existing is None:
                upload = None
                if model.serves:
                    upload = container.artifacts.begin()
                    upload.write(fraud_model_onnx())
                container.models.register(actor, name=model.name, description=model.description,
                                          framework=model.framework, model_id=model_id,
                                          upload=upload, filename=f"{model.name}.onnx")
                if model.serves:  # a retrained version 2 as a 10 % canary
                    retrained = container.artifacts.begin()
                    retrained.write(fraud_model_onnx(bias=-0.4))
                    container.models.upload_version(actor, model_id, retrained,
                                                    filename=f"{model.name}.onnx",
                                                    notes="retrained on the last month")
                    container.models.update(actor, model_id, serving=[(2, 10), (1, 90)])
            retire = bool(model.retire) and (existing is None or existing["status"] == "active")
            plan.append((user, model, model_id, incident, retire))
    return plan


def load_demo(
    container: Container,
    *,
    days: int = 90,
    scale: float = 1.0,
    seed: int = 42,
    progress: Callable[[int], None] | None = None,
) -> DemoResult:
    """Register the demo models, record their usage, retire some, and catch projections up."""
    rng = random.Random(seed)  # noqa: S311 - demo data, not secrets
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    issuer = container.settings.jwt_issuer  # the issuer of the tokens ``demo_tokens`` prints
    result = DemoResult(demo_users(issuer))
    plan = _register(container, result, rng, days)
    pending: list[UsageRecord] = []
    gateway = Writer(_user_id(GATEWAY_SUBJECT, issuer), GATEWAY_SUBJECT, issuer,
                     all_tenants=True)

    def flush() -> None:
        outcome = container.usage.record_batch(pending, gateway)
        result.accepted += outcome.accepted
        result.duplicates += outcome.duplicates
        if progress is not None:
            progress(len(pending))
        pending.clear()

    for _, model, model_id, incident, _ in plan:
        usage = _usage(rng, model_id, model, days=days, scale=scale, today=today,
                       incident=incident)
        for record in usage:
            result.failures += not record.success
            pending.append(record)
            if len(pending) >= BATCH:
                flush()
    if pending:
        flush()
    # Retire after the usage is in: usage for a model that is no longer active is refused.
    for user, model, model_id, _, retire in plan:
        if not retire:
            continue
        actor = Actor(user.user_id, "demo", subject=user.subject, issuer=issuer)
        if model.retire == "deleted":
            container.models.delete(actor, model_id)
        else:
            container.models.update(actor, model_id, status=ModelStatus.INACTIVE)
    container.projector.catch_up_all()
    return result


def demo_key(container: Container, subject: str = "alice") -> str:
    """A fresh API key of the user's for all their models (earlier demo keys are revoked)."""
    issuer = container.settings.jwt_issuer
    user = next(u for u in demo_users(issuer) if u.subject == subject)
    who = Actor(user.user_id, "demo", subject=subject, issuer=issuer).who()
    for key in container.keys.get_keys(user.user_id):
        if key.name == "demo":
            container.keys.revoke(user.user_id, key.id, who)
    return container.keys.create(user.user_id, "demo", None, who)[1]


def demo_sign_in_link(settings: Settings, base_url: str, subject: str = "alice") -> str:
    """A one-time dashboard sign-in link for a demo user (``modelledger login-url``'s)."""
    from api.tokens import SCOPE_MODELS, resolve_secret  # noqa: PLC0415 - the API's tokens
    from api.ui.links import issue_link_token, link_key, login_url  # noqa: PLC0415

    key = link_key(resolve_secret(settings))
    return login_url(base_url, issue_link_token(key, subject, [SCOPE_MODELS],
                                                issuer=settings.jwt_issuer))
