"""A model's upstream: the URL and model name rules, the operator's host list, and the
``UpstreamChanged`` events of the Model aggregate."""

from __future__ import annotations

import uuid

import pytest

from domain.errors import ModelDeletedError, ValidationError
from domain.model import Model
from domain.upstream import (
    MODEL_NAME_MAX,
    NO_UPSTREAM,
    URL_MAX,
    Upstream,
    UpstreamHosts,
    check_upstream,
)

WHO = {"actor": "user-1", "correlation_id": "req-1"}
UPSTREAM = Upstream("http://mlserver:8080", "iris")


def new_model(**overrides: object) -> Model:
    values: dict[str, object] = {
        "model_id": uuid.uuid4(), "owner_id": uuid.uuid4(), "name": "resnet",
        "description": "", "framework": "sklearn", "endpoint_url": "/v2/models/x", **WHO,
    }
    values.update(overrides)
    return Model.register(**values)  # type: ignore[arg-type]


class TestRules:
    @pytest.mark.parametrize("url", [
        "http://mlserver", "https://mlserver.internal:8443", "http://10.0.0.7:8080/",
        "http://gateway.example/models/prefix", "http://h:1/a%20b/c@d",
    ])
    def test_http_and_https_urls_with_a_host_are_accepted(self, url: str) -> None:
        assert check_upstream(url, "iris") == Upstream(url, "iris")

    @pytest.mark.parametrize("url", [
        "", "mlserver:8080", "ftp://mlserver", "http://", "http://user:pw@mlserver",
        "http://mlserver/?x=1", "http://mlserver/#top", "http://mlserver:0",
        "http://mlserver:65536", "http://mlserver:80x", "HTTP://mlserver", "http://-bad-/",
        "http://mlserver/a b", "http://mlserver/%zz", "http://mlserver\n",
        "http://[::1]:8080", "http://a/" + "x" * URL_MAX,
    ])
    def test_other_urls_are_refused_naming_the_url(self, url: str) -> None:
        with pytest.raises(ValidationError) as error:
            check_upstream(url, "iris")
        assert error.value.field == "upstream.url"

    @pytest.mark.parametrize("model", ["", "a/b", "a b", "ü", "x" * (MODEL_NAME_MAX + 1)])
    def test_the_model_name_is_1_to_200_plain_characters(self, model: str) -> None:
        with pytest.raises(ValidationError) as error:
            check_upstream("http://mlserver", model)
        assert error.value.field == "upstream.model"


class TestHosts:
    def test_no_entry_allows_no_host(self) -> None:
        assert not UpstreamHosts.parse("").allows("http://mlserver:8080")

    def test_a_host_alone_allows_any_port_of_it_and_ignores_case(self) -> None:
        hosts = UpstreamHosts.parse(" MLServer , other")
        assert hosts.allows("http://mlserver:8080")
        assert hosts.allows("https://mlserver")
        assert not hosts.allows("http://mlserver.evil:8080")

    def test_a_host_with_a_port_allows_that_port_only(self) -> None:
        hosts = UpstreamHosts.parse("mlserver:8080,secure:443")
        assert hosts.allows("http://mlserver:8080/v2")
        assert not hosts.allows("http://mlserver:8081")
        assert not hosts.allows("http://mlserver")  # port 80
        assert hosts.allows("https://secure")  # https's default port

    @pytest.mark.parametrize("entry", ["http://mlserver", "mlserver:port", "a@b", "h/x", ":80"])
    def test_a_malformed_entry_is_refused_naming_the_setting(self, entry: str) -> None:
        with pytest.raises(ValueError, match="MODELLEDGER_UPSTREAM_HOSTS"):
            UpstreamHosts.parse(entry)


class TestModelUpstream:
    def test_an_upstream_given_at_registration_follows_the_registration(self) -> None:
        model = new_model(upstream=UPSTREAM)
        registered, changed = model.collect_events()
        assert isinstance(registered, Model.Registered)
        assert isinstance(changed, Model.UpstreamChanged)
        assert (changed.url, changed.model, changed.actor) == (
            "http://mlserver:8080", "iris", "user-1"
        )
        assert model.upstream == {"url": "http://mlserver:8080", "model": "iris"}

    def test_a_registration_without_upstream_records_none(self) -> None:
        assert len(new_model().collect_events()) == 1

    def test_removing_records_empty_strings(self) -> None:
        model = new_model(upstream=UPSTREAM)
        model.collect_events()
        assert model.set_upstream(NO_UPSTREAM, **WHO) is True
        (removed,) = model.collect_events()
        assert isinstance(removed, Model.UpstreamChanged)
        assert (removed.url, removed.model) == ("", "")
        assert model.upstream is None

    def test_setting_the_same_upstream_records_nothing(self) -> None:
        model = new_model(upstream=UPSTREAM)
        model.collect_events()
        assert model.set_upstream(Upstream("http://mlserver:8080", "iris"), **WHO) is False
        assert model.set_upstream(NO_UPSTREAM, **WHO) is True
        assert model.set_upstream(NO_UPSTREAM, **WHO) is False

    def test_a_bad_upstream_is_refused_before_any_event(self) -> None:
        with pytest.raises(ValidationError):
            new_model(upstream=Upstream("ftp://mlserver", "iris"))
        model = new_model()
        model.collect_events()
        with pytest.raises(ValidationError):
            model.set_upstream(Upstream("http://mlserver", "a b"), **WHO)
        assert model.collect_events() == []

    def test_a_deleted_model_takes_no_upstream(self) -> None:
        model = new_model()
        model.delete(**WHO)
        with pytest.raises(ModelDeletedError):
            model.set_upstream(UPSTREAM, **WHO)
