# NexusAPI image: one image for web (gunicorn), the workers (one per queue) and beat (Celery).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=nexus.settings

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system nexus \
    && useradd --system --gid nexus --home-dir /app --shell /usr/sbin/nologin nexus

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=nexus:nexus . .
# Static files are collected at build time; the placeholder key never serves a request.
RUN SECRET_KEY=collectstatic-only DATABASE_URL=postgres://unused/unused \
    python manage.py collectstatic --noinput -v 0 \
    && mkdir -p /tmp/prometheus && chown nexus:nexus /tmp/prometheus \
    && mkdir -p /var/lib/nexus/media && chown nexus:nexus /var/lib/nexus/media

USER nexus
# 8000: web; 9808: a worker's own /metrics (WORKER_METRICS_PORT)
EXPOSE 8000 9808
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
# Uploaded files (filesystem storage); a volume shared by web and workers in compose.
ENV MEDIA_ROOT=/var/lib/nexus/media
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/health || exit 1
CMD ["gunicorn", "nexus.wsgi:application", "-c", "nexus/gunicorn.conf.py"]
