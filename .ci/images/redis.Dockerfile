# CI only: Redis from Debian's package on the local base image (no registry to pull from).
ARG PYTHON_IMAGE=local/python-base
FROM ${PYTHON_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data
