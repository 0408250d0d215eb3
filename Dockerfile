# agent-runner: a Temporal worker for AI-agent runs. Build with BuildKit (buildx, or DOCKER_BUILDKIT=1).
# Stages: poetry -> deps (venv from poetry.lock) -> venv (stripped, compiled); app (the code, compiled);
# runtime: the base image plus those two, and no build tools.
ARG BASE_IMAGE=python:3.11-slim

# ---- poetry: the dependency manager, in its own venv; it never reaches the runtime stage.
FROM ${BASE_IMAGE} AS poetry
ARG POETRY_VERSION=2.5.1
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# The optional "ca" secret is a CA bundle for builds behind a TLS-intercepting proxy. As a
# secret mount it is in no layer and not in `docker history`.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca,target=/run/secrets/ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python -m venv /opt/poetry \
    && /opt/poetry/bin/pip install --quiet --no-compile "poetry==${POETRY_VERSION}"

# ---- deps: /opt/venv from poetry.lock (hashes checked). Dependencies only: a source edit reuses it.
FROM poetry AS deps
ENV POETRY_NO_INTERACTION=1 POETRY_CACHE_DIR=/root/.cache/pypoetry
WORKDIR /src
COPY pyproject.toml poetry.lock ./
# Removed after install, never used at run time: the SDK's bundled Rust sources, its optional
# integrations (contrib), its test-server helpers, gRPC stubs (imported only with grpcio, which
# is not installed), every type stub, and the test data, benchmarks and test-runner plugins that
# protobuf, certifi and anyio ship (anyio's trio backend too: trio is not installed). The .py
# sources and RECORD files stay (each RECORD without the lines of what was removed): tracebacks
# through the SDK show their lines, and pip can still list and check what is installed.
RUN --mount=type=cache,target=/root/.cache/pypoetry \
    --mount=type=secret,id=ca,target=/run/secrets/ca \
    if [ -s /run/secrets/ca ]; then export REQUESTS_CA_BUNDLE=/run/secrets/ca; fi \
    && python -m venv --without-pip /opt/venv \
    && VIRTUAL_ENV=/opt/venv /opt/poetry/bin/poetry install --only main --no-root --no-ansi \
    && sp=/opt/venv/lib/python3.11/site-packages \
    && rm -rf "$sp"/temporalio/bridge/sdk-core "$sp"/temporalio/bridge/src "$sp"/temporalio/bridge/Cargo.* \
              "$sp"/temporalio/contrib "$sp"/temporalio/testing "$sp"/google/protobuf/testdata \
              "$sp"/google/protobuf/internal/*benchmark* "$sp"/google/protobuf/internal/testing_refleaks.py \
              "$sp"/certifi/tests "$sp"/anyio/_backends/_trio.py "$sp"/anyio/pytest_plugin.py \
    && find /opt/venv \( -name '*.pyi' -o -name '*_pb2_grpc.py' \) -delete \
    && python -c "import pathlib, sys; sp = pathlib.Path(sys.argv[1]); [r.write_text(''.join(l for l in r.read_text().splitlines(True) if (sp / l.split(',')[0]).exists())) for r in sp.glob('*.dist-info/RECORD')]" "$sp"

# ---- binutils: only for `strip`; built in parallel with deps.
FROM ${BASE_IMAGE} AS binutils
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*

# ---- tini: a minimal init for PID 1 (Debian's package); only its binary reaches the runtime stage.
FROM ${BASE_IMAGE} AS tini
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

# ---- venv: the finished venv: native libraries stripped of debug symbols (-7 MB), bytecode
# compiled. unchecked-hash: the interpreter trusts the bytecode without a stat of its source
# (the image never changes), and the same .py gives the same .pyc in every build (no time stamps),
# so the bytecode stays valid when a reproducible build sets every file's time to SOURCE_DATE_EPOCH.
# The generated protobuf modules (*_pb2.py, 105 files of serialized descriptors, no lines worth
# reading in a traceback) keep only their bytecode, next to where the source was (-1.9 MB).
FROM binutils AS venv
COPY --from=deps /opt/venv /opt/venv
RUN find /opt/venv -name '*.so' -exec strip --strip-unneeded {} + \
    && find /opt/venv -name '*_pb2.py' -exec python -m compileall -q -b --invalidation-mode unchecked-hash {} + \
    && find /opt/venv -name '*_pb2.py' -delete \
    && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

# ---- app: the worker's code, byte-compiled, to be copied into the runtime stage as one layer.
FROM ${BASE_IMAGE} AS app
COPY healthcheck.py /app/
COPY agent_runner/ /app/agent_runner/
RUN python -m compileall -q --invalidation-mode unchecked-hash /app

# ---- runtime: the base image, the venv, the code, an unprivileged user. No compilers, no Poetry, no caches.
FROM ${BASE_IMAGE} AS runtime
# UID/GID 1000 by number, so Kubernetes' runAsNonRoot can verify it. /workspace is owned by
# stigmer and group 0 and group-writable, so an arbitrary UID in group 0 (OpenShift) can write too.
# No password-change date in /etc/shadow (the account has no password): the layer is the same
# whatever the day of the build.
RUN groupadd --gid 1000 stigmer \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/stigmer --shell /usr/sbin/nologin stigmer \
    && chage --lastday -1 stigmer \
    && install -d -o 1000 -g 0 -m 0775 /workspace

# PID 1 is tini: it forwards SIGTERM to the worker (so a stop still drains) and reaps any
# orphan that outlived the launcher meant to reap it (see agent_runner/sandbox.py).
COPY --from=tini /usr/bin/tini /usr/bin/tini
# Code and venv stay root-owned: the worker can run them but not change them.
COPY --from=venv --chown=root:root /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    STIGMER_WORKSPACE_ROOT=/workspace
# Bytecode for the standard-library modules the health check imports: the base image ships
# none, and user 1000 could not write it, so every probe (every 30 s, for the container's
# life) would compile them again. Importing them once as root writes exactly those (2.8 MB);
# the worker's other modules are compiled once per start instead (1.2 MB saved).
# Before the code is copied, so a source edit does not redo it.
RUN python -c "import temporalio.service, temporalio.envconfig, asyncio, json, logging, threading, traceback"
COPY --from=app --chown=root:root /app /app
ENV PYTHONDONTWRITEBYTECODE=1
VOLUME ["/workspace"]
USER 1000:1000
# The conventional port for the Prometheus endpoint; it listens only when
# STIGMER_METRICS_ADDRESS is set (e.g. 0.0.0.0:9464). See docs/docker.md, Metrics.
EXPOSE 9464

# Fails when this worker is stuck: frozen, its event loop blocked, its SDK failed or no longer
# polling with free slots. Busy, or waiting out a Temporal outage, is healthy; the line says
# whether it is also ready. Kubernetes: --liveness and --readiness (see agent_runner/health.py).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "agent_runner"]

# Last, so that a new version or revision changes no layer above.
ARG VERSION=dev-local
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
# The default build id for Worker Deployment versioning (TEMPORAL_WORKER_BUILD_ID wins over it).
ENV STIGMER_BUILD_ID=${VERSION}
LABEL org.opencontainers.image.title="agent-runner" \
      org.opencontainers.image.description="Temporal worker that executes AI-agent runs in a /workspace volume" \
      org.opencontainers.image.source="https://github.com/stigmer/agent-runner" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
