# syntax=docker/dockerfile:1
# paddle-kuscia-operator image: the package and its dependencies in a virtualenv, copied into a clean
# slim image that runs as a numeric non-root user (so Kubernetes can verify runAsNonRoot).
# Build:  docker build -t paddle-kuscia-operator:dev .
# Both stages must use the same Python: the venv's interpreter is a symlink into the base image.
# CI should pin the base by digest (python:3.11-slim@sha256:...).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /venv
# Only what `pip install .` needs, so editing tests or manifests does not invalidate this layer.
COPY pyproject.toml README.md ./
COPY operator/ operator/
# A regular (non-editable) install: the final image needs no source tree, only /venv.
RUN /venv/bin/pip install .

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="paddle-kuscia-operator" \
      org.opencontainers.image.description="Kubernetes operator for PaddleService on Knative Serving or Kuscia, and a Kuscia mirror for KusciaJob/KusciaDeployment" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# Unbuffered output so kopf's logs reach `kubectl logs` immediately; no .pyc writes at runtime
# because the root filesystem is mounted read-only (pip already compiled them in the build stage).
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --gid 10001 paddle-kuscia \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin paddle-kuscia
COPY --from=build /venv /venv
USER 10001:10001
# 8080: kopf liveness endpoint (--liveness), 9090: Prometheus metrics (--metrics-port).
EXPOSE 8080 9090
ENTRYPOINT ["paddle-kuscia", "run"]
CMD ["--all-namespaces"]
