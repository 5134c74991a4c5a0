# CI only: Phoenix from PyPI, pinned by requirements/phoenix.lock, on the local base image.
ARG PYTHON_IMAGE=local/python-base
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/phoenix/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PHOENIX_WORKING_DIR=/data \
    PHOENIX_PORT=6006
COPY requirements/phoenix.lock /tmp/phoenix.lock
RUN python3 -m venv /opt/phoenix \
    && pip install --require-hashes --no-deps -r /tmp/phoenix.lock \
    && mkdir -p /data
CMD ["phoenix", "serve"]
