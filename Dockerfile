# mailflow in a container: slim, runs as an unprivileged user, configuration mounted.
#
#   docker build -t mailflow .
#   docker run -v /etc/mailflow:/etc/mailflow:ro -v mailflow-data:/var/lib/mailflow mailflow
#
# The compose file next to this one runs it with PostgreSQL and Dovecot (docs/deploy.md).
# Never built by our CI: there is no container engine on our machines;
# tests/unit/test_deploy_files.py checks that this file and its inputs are coherent.

ARG PYTHON=3.12-slim-bookworm

# -- build: a virtualenv with mailflow and the PostgreSQL driver, no compilers kept ------
FROM python:${PYTHON} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/mailflow
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mailflow ./mailflow
COPY templates ./templates
COPY rules ./rules
RUN /opt/mailflow/bin/pip install ".[postgres]"

# -- runtime --------------------------------------------------------------------------------
FROM python:${PYTHON}
LABEL org.opencontainers.image.title="mailflow" \
      org.opencontainers.image.description="Email-driven support mailbox processor" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, unprivileged uid: volume and secret file ownership can be set to match it.
RUN groupadd --system --gid 10001 mailflow \
 && useradd --system --uid 10001 --gid mailflow --home-dir /var/lib/mailflow \
            --no-create-home --shell /usr/sbin/nologin mailflow \
 && install -d -o mailflow -g mailflow -m 0750 /var/lib/mailflow \
 && install -d -m 0755 /etc/mailflow
COPY --from=build /opt/mailflow /opt/mailflow
COPY deploy/docker-entrypoint.sh /usr/local/bin/mailflow-entrypoint
ENV PATH=/opt/mailflow/bin:$PATH \
    MAILFLOW_CONFIG=/etc/mailflow/mailflow.yaml \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER mailflow
WORKDIR /var/lib/mailflow
VOLUME ["/var/lib/mailflow"]
# Healthy when the running daemon says so: `mailflow status` asks its /healthz
# (metrics.listen in the mounted configuration) and exits 1 when a mailbox, the sender
# or the daemon itself is in trouble, or does not answer.
HEALTHCHECK --interval=60s --timeout=30s --start-period=30s --retries=3 \
    CMD ["mailflow", "status"]
# SIGTERM finishes the batch in hand, then exits 0 (the daemon handles it itself).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mailflow-entrypoint"]
CMD ["run"]
