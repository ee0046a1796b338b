"""The ceiling of the bare stack, for benchmarks/api_bench.py: a minimal Litestar app under uvicorn.

Every GET, whatever its path, headers or query, is answered 200 with one constant JSON body (in
api_bench.py the bytes of a real ``GET /api/models/{id}`` response, read from the file named by
``BARE_STACK_BODY``): no middleware, no authentication, no database, no encoding per request.
Launched with the uvicorn settings of ``modelledger serve`` (modelledger/cli/api_cmd.py): the
same workers, uvloop and httptools when installed, no access log, ``log_config=None``. What the
API serves per second is then read against what this stack alone can do on the same machine.

    .venv/bin/python benchmarks/bare_stack.py --body detail.json --workers 2 --port 8124
    BARE_STACK_BODY=detail.json .venv/bin/uvicorn --app-dir benchmarks bare_stack:create_app \\
        --factory --port 8124

Independent of the project's code on purpose: it measures Litestar and uvicorn only.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from litestar import Litestar, MediaType, Response, get

BODY_ENV = "BARE_STACK_BODY"
DEFAULT_BODY = b'{"detail": "bare stack"}'


def create_app() -> Litestar:
    """The uvicorn factory (``bare_stack:create_app``), run in every worker process."""
    path = os.environ.get(BODY_ENV)
    body = Path(path).read_bytes() if path else DEFAULT_BODY

    @get(["/", "/{rest:path}"], media_type=MediaType.JSON)
    async def constant(rest: str = "") -> Response[bytes]:  # noqa: ARG001 - any path, one answer
        return Response(body, media_type=MediaType.JSON)

    # logging_config=None as in api/app.py: no handler of Litestar's own on the root logger.
    return Litestar(route_handlers=[constant], openapi_config=None, logging_config=None)


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def main() -> None:
    import uvicorn  # noqa: PLC0415 - only the command line needs it

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--body", help=f"file with the response body [{BODY_ENV}]")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8124)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    if args.body:
        os.environ[BODY_ENV] = str(Path(args.body).resolve())  # read again in each worker
    # The same call as `modelledger serve` (modelledger/cli/api_cmd.py), access log off.
    uvicorn.run(
        f"{Path(__file__).stem}:create_app",  # importable: this file's folder is sys.path[0]
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_level=args.log_level,
        log_config=None,
        loop="uvloop" if _has("uvloop") else "auto",
        http="httptools" if _has("httptools") else "auto",
    )


if __name__ == "__main__":
    main()
