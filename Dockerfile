# NexusAPI image: one image for web (gunicorn), the workers (one per queue) and beat (Celery).
# Two stages: the first builds the virtualenv, the second copies only that virtualenv and the
# application onto a fresh base, so nothing used to build the dependencies reaches the image.
# No secret is given to either stage: every one comes from the environment at run time.

FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt


FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:$PATH" \
    DJANGO_SETTINGS_MODULE=nexus.settings \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    MEDIA_ROOT=/var/lib/nexus/media

# curl answers the HEALTHCHECK below and docker-compose.yml's healthchecks. Not pinned:
# Debian's archive keeps only the current build of a package, so a pinned version stops
# building at the next security update; the update here takes that fix instead.
# The application writes only to the multiprocess metrics directory, the uploaded files (a
# volume shared by web and the workers in compose), its home directory and /tmp.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 nexus \
    && useradd --system --uid 10001 --gid nexus --create-home --home-dir /home/nexus \
        --shell /usr/sbin/nologin nexus \
    && mkdir -p /tmp/prometheus /var/lib/nexus/media \
    && chown nexus:nexus /tmp/prometheus /var/lib/nexus/media

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Owned by root: the process that serves requests cannot rewrite its own code.
COPY . .
# Static files are collected at build time. The placeholder key and database exist only for
# this one command (settings refuse to load without a key when DEBUG is off): nothing is
# served with them, no connection is made, and neither is left in the image's environment.
RUN SECRET_KEY=collectstatic-only DATABASE_URL=postgres://unused/unused \
    python manage.py collectstatic --noinput -v 0

USER 10001:10001
# 8000: web; 9808: a worker's own /metrics (WORKER_METRICS_PORT)
EXPOSE 8000 9808
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["sh", "-c", "curl -fsS -o /dev/null http://127.0.0.1:${PORT:-8000}/health || exit 1"]
CMD ["gunicorn", "nexus.wsgi:application", "-c", "nexus/gunicorn.conf.py"]
