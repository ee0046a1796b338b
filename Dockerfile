# syntax=docker/dockerfile:1
# One image for every role: `serve` (API), `worker` (projections), `scheduler`, and the
# one-off commands (`projections rebuild`, `compact`, `audit`, `demo`). Configuration is by
# MODELLEDGER_* environment variables (docs/operations.md).

FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY config ./config
COPY domain ./domain
COPY eventstore ./eventstore
COPY projections ./projections
COPY serving ./serving
COPY services ./services
COPY api ./api
COPY scheduler ./scheduler
COPY modelledger ./modelledger
# Build the wheel of the project and of every dependency, so the runtime stage needs no compiler.
RUN python -m build --wheel --outdir /wheels . \
 && pip wheel --no-cache-dir --wheel-dir /wheels /wheels/modelledger-*.whl

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELLEDGER_DATA_DIR=/var/lib/modelledger \
    MODELLEDGER_HOST=0.0.0.0 \
    MODELLEDGER_PORT=8000
RUN useradd --system --uid 10001 --home-dir /var/lib/modelledger modelledger \
 && mkdir -p /var/lib/modelledger /run/modelledger \
 && chown modelledger:modelledger /var/lib/modelledger /run/modelledger
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels modelledger && rm -rf /wheels
USER modelledger
WORKDIR /var/lib/modelledger
EXPOSE 8000
# The API's liveness; docker-compose.yml gives each role its own healthcheck.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('MODELLEDGER_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["modelledger"]
CMD ["serve"]
