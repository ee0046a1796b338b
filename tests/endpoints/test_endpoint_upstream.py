"""A model that names an upstream V2 server is served by it: MLServer 1.7.1, a server we did not
write, serving the same scikit-learn model, behind the endpoint."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tritonclient.http as triton

from tests.endpoints.conftest import World, eventually, key_header
from tests.endpoints.servers import MLServer
from tests.onnx_models import FEATURES
from tests.pg import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServer]:
    with MLServer(Path(tmp_path_factory.mktemp("mlserver"))) as server:
        yield server


class SlowServer:
    """Accepts and never answers: an upstream slower than any timeout."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                threading.Event().wait(30)

            def do_POST(self) -> None:
                threading.Event().wait(30)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def slow() -> Iterator[SlowServer]:
    server = SlowServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A port nothing listens on."""
    port = free_port()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    return port


@pytest.fixture
def endpoint_settings(mlserver: MLServer, slow: SlowServer, closed_port: int) -> dict[str, object]:
    hosts = f"127.0.0.1:{mlserver.port},127.0.0.1:{slow.port},127.0.0.1:{closed_port}"
    return {"upstream_hosts": hosts, "upstream_timeout": 1.0}


def _features(rows: int) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(rows, FEATURES)).astype(np.float32)


def test_infer_metadata_and_ready_are_forwarded_to_the_upstream(
    live: World, mlserver: MLServer
) -> None:
    alice = live.user()
    model = alice.register(upstream={"url": mlserver.url, "model": mlserver.name})
    assert model["upstream"] == {"url": mlserver.url, "model": mlserver.name}
    headers = key_header(alice.key())
    client = triton.InferenceServerClient(live.url.removeprefix("http://"))
    assert client.is_model_ready(model["id"], headers=dict(headers))
    assert client.get_model_metadata(model["id"], headers=dict(headers))["name"] == model["id"]

    x = _features(4)
    tensor = triton.InferInput("predict", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)  # MLServer speaks JSON tensors
    result = client.infer(model["id"], [tensor], headers=dict(headers), request_id="up-1",
                          outputs=[triton.InferRequestedOutput("predict", binary_data=False)])
    direct = triton.InferenceServerClient(mlserver.url.removeprefix("http://")).infer(
        mlserver.name, [tensor], outputs=[triton.InferRequestedOutput("predict",
                                                                      binary_data=False)])
    np.testing.assert_array_equal(result.as_numpy("predict"), direct.as_numpy("predict"))

    def metered() -> list[Any]:
        from tests.endpoints.test_endpoint_metering import recorded  # noqa: PLC0415

        return recorded(live, model["id"])

    assert eventually(lambda: len(metered()) == 1)
    [event] = metered()
    assert (event.request_id, event.success, event.status_code) == ("up-1", True, 200)
    assert event.output_bytes > 0


def test_an_upstream_error_status_is_passed_through_and_metered(
    live: World, mlserver: MLServer
) -> None:
    alice = live.user()
    model = alice.register(upstream={"url": mlserver.url, "model": mlserver.name})
    response = live.http.post(
        f"/v2/models/{model['id']}/infer", headers=key_header(alice.key()),
        json={"inputs": [{"name": "predict", "shape": [1, 3], "datatype": "FP32",
                          "data": [1.0, 2.0, 3.0]}]},  # 3 features, the model wants 20
    )
    assert 400 <= response.status_code < 600
    assert response.status_code != 200


def test_an_unreachable_upstream_is_502_and_a_slow_one_504(
    live: World, slow: SlowServer, closed_port: int
) -> None:
    alice = live.user()
    key = key_header(alice.key())
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
    down = alice.register(upstream={"url": f"http://127.0.0.1:{closed_port}", "model": "m"})
    sleepy = alice.register(upstream={"url": f"http://127.0.0.1:{slow.port}", "model": "m"})
    gone = live.http.post(f"/v2/models/{down['id']}/infer", json=body, headers=key)
    assert gone.status_code == 502
    assert "unreachable" in gone.json()["error"]
    late = live.http.post(f"/v2/models/{sleepy['id']}/infer", json=body, headers=key)
    assert late.status_code == 504
    assert "error" in late.json()


def test_an_upstream_host_not_listed_by_the_operator_is_refused(live: World) -> None:
    alice = live.user()
    response = live.http.post(
        "/api/models", json={"name": "x", "framework": "sklearn",
                             "upstream": {"url": "http://169.254.169.254", "model": "m"}},
        headers=alice.headers,
    )
    assert response.status_code == 422
    assert "upstream" in {p["name"] for p in response.json()["invalid_params"]}


def test_an_upstream_change_is_in_the_audit_trail(live: World, mlserver: MLServer) -> None:
    alice = live.user()
    model = alice.register()
    changed = alice.put(model["id"], upstream={"url": mlserver.url, "model": mlserver.name})
    assert changed.status_code == 200, changed.text
    history = live.http.get(f"/api/models/{model['id']}/history", headers=alice.headers).json()
    assert any(e["type"] == "UpstreamChanged" for e in history["items"])
