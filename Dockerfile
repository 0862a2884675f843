# syntax=docker/dockerfile:1
# One image for every reelvault service (gateway, generator, archiver, catalog, the simulator and
# the `reelvault` operator command): they share one lockfile and one library, so a single build,
# scan and tag is promoted through environments, and a service is only a choice of module
# (`command` in docker-compose.yml, `args` in deploy/k8s). The default command is the gateway.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: resolve exactly uv.lock into /opt/venv ----------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# Bytecode compiled at install time: the runtime root filesystem is read-only.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
# The same uv as the Makefile's (uv.lock's format follows uv's minor version).
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# Third-party dependencies first, from the lockfile alone: this layer survives code changes.
COPY pyproject.toml uv.lock README.md ./
COPY libs/common/pyproject.toml libs/common/
COPY services/archiver/pyproject.toml services/archiver/
COPY services/catalog/pyproject.toml services/catalog/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/generator/pyproject.toml services/generator/
COPY services/provider-sim/pyproject.toml services/provider-sim/
# --no-dev and no extras: neither the test tools nor the `embedded` extra (a NATS binary and a
# whole PostgreSQL that only `reelvault up` starts) end up in the image.
RUN uv sync --frozen --no-dev --all-packages --no-install-workspace
COPY libs ./libs
COPY services ./services
COPY src ./src
# --no-editable: the workspace's own packages are installed into the venv, so the runtime stage
# needs /opt/venv only, not the sources.
RUN uv sync --frozen --no-dev --all-packages --no-editable

# --- runtime ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# A fixed, unprivileged uid/gid (Kubernetes' runAsNonRoot checks the number). Every path the
# services write is made here and owned by it, so the root filesystem can be read-only:
# /data/storage (filesystem storage backend), /data/backups (`reelvault backup`) and /tmp
# (temporary files; a tmpfs in compose, an emptyDir in Kubernetes). A volume mounted on one of
# them starts out owned by 10001 (Docker copies the ownership; Kubernetes sets fsGroup).
RUN groupadd --system --gid 10001 reelvault \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin reelvault \
    && install -d -o 10001 -g 10001 -m 0750 /data /data/storage /data/backups \
    && chmod 1777 /tmp
COPY --from=build /opt/venv /opt/venv
# The image's own health check: the image runs every service, so what "healthy" means depends
# on the one this container runs (its PID 1). Kubernetes ignores it and uses the probes in
# deploy/k8s, which run the same checks.
COPY --chmod=0755 <<'EOF' /usr/local/bin/reelvault-healthcheck
#!/bin/sh
# Exit 0 when the service this container runs is healthy, non-zero otherwise.
cmdline=$(tr '\000' ' ' < /proc/1/cmdline)
http_ok() {
    exec python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1"
}
case "$cmdline" in
    *reelvault_gateway*) http_ok "http://127.0.0.1:${REELVAULT_GATEWAY_PORT:-8000}/healthz" ;;
    *reelvault_providersim*) http_ok "http://127.0.0.1:${PROVIDER_SIM_PORT:-8100}/healthz" ;;
    *reelvault_catalog*) exec python -m reelvault_common.messaging.healthcheck catalog ;;
    *reelvault_generator* | *reelvault_archiver*)
        exec python -m reelvault_common.messaging.healthcheck nats ;;
    # One-off commands (`reelvault backup ...`, `reelvault orgs ...`) have nothing to watch.
    *) exit 0 ;;
esac
EOF

# Listen on every interface (a container's loopback is unreachable from outside it); the
# rest of the configuration comes from the environment at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    REELVAULT_GATEWAY_HOST=0.0.0.0 \
    REELVAULT_METRICS_HOST=0.0.0.0 \
    PROVIDER_SIM_HOST=0.0.0.0 \
    REELVAULT_STORAGE_DIR=/data/storage \
    REELVAULT_BACKUP_DIR=/data/backups
WORKDIR /data
USER 10001:10001
# 8000: the gateway's HTTP (and its /metrics); 9100: the other services' Prometheus metrics.
EXPOSE 8000 9100
HEALTHCHECK --interval=15s --timeout=10s --start-period=60s --retries=3 \
    CMD ["reelvault-healthcheck"]
CMD ["python", "-m", "reelvault_gateway"]
