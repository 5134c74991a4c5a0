# agent-endpoint: the service (and, with another command, its job worker) in one image.
#
#   docker build -t agent-endpoint .
#   docker run -p 8000:8000 -e AGENT_API_KEYS=<key> agent-endpoint
#
# The base image is a build argument: the official slim Python image by default; CI builds
# the same file on a Debian image made without a registry (.ci/container-check).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: a venv with the app
FROM ${PYTHON_IMAGE} AS build

# Debian's own Python (CI's base) refuses pip installs outside a venv; the official image's
# does not care. A venv works on both, and is the one folder the runtime stage copies.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv "$VIRTUAL_ENV"

WORKDIR /src
# Dependencies first, from the lock file alone: this layer is rebuilt only when the lock
# changes, not on every code edit. --require-hashes: exactly the pinned files.
COPY requirements/app.lock requirements/app.lock
RUN pip install --require-hashes --no-deps -r requirements/app.lock

# Then the project itself, without its dependencies (installed above) and without build
# isolation (setuptools is in the lock, so nothing is fetched unpinned).
COPY pyproject.toml README.md ./
COPY agent agent
COPY app app
COPY coordinator coordinator
# Then compile every module, so the first request does not pay for it and the non-root user
# needs no write access to site-packages.
RUN pip install --no-deps --no-build-isolation . \
    && python -m compileall -q "$VIRTUAL_ENV"

# ---------------------------------------------------------------- runtime: no build tools
FROM ${PYTHON_IMAGE} AS runtime

# A user of its own: the service never runs as root.
RUN groupadd --system --gid 10001 agent \
    && useradd --system --uid 10001 --gid agent --home-dir /srv --no-create-home agent

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # Listen on every interface inside the container; the port is 8000, or PORT where a
    # platform sets it (AGENT_PORT, if set, comes first).
    AGENT_HOST=0.0.0.0 \
    # Behind a load balancer: trust its X-Forwarded-* headers (set to its address to narrow).
    AGENT_FORWARDED_ALLOW_IPS=* \
    AGENT_LOG_FORMAT=json

COPY --from=build /opt/venv /opt/venv
# The working directory is where `my_agent:run` and an `.env` are looked up: mount or COPY
# your agent module here in an image FROM this one.
WORKDIR /srv
# Numeric, so Kubernetes' runAsNonRoot can verify it; the uid alone (the group is the user's
# own), which `docker compose watch` can resolve when it copies edited files in.
USER 10001

EXPOSE 8000
# Liveness from inside the container (no curl in slim images): GET /healthz on $PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('AGENT_PORT') or os.environ.get('PORT') or '8000'}/healthz\", timeout=2)"]

# `serve` honours PORT, AGENT_WORKERS (or WEB_CONCURRENCY) and AGENT_FORWARDED_ALLOW_IPS;
# the worker of the async mode is the same image with `worker` as its command.
ENTRYPOINT ["agent-endpoint"]
CMD ["serve"]
