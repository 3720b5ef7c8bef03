"""Celery beat's scheduler: django-celery-beat's DatabaseScheduler (the schedule lives in
the database, operators edit it in the admin), reconnecting to a lost broker steadily.

Beat sends the sweeps that re-send what a Redis outage lost; with Celery's back-off (2, 4,
6 ... 30 s) it came back up to 12 s after a 30 s outage ended, and those sends waited."""

from __future__ import annotations

from pathlib import Path

import structlog
from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

from nexus.celery import reconnecting_steadily

log = structlog.get_logger(__name__)


class NexusScheduler(DatabaseScheduler):
    def _ensure_connected(self):
        def on_error(exc, interval):
            log.error("beat.broker_unavailable", error=str(exc), retry_in_s=interval)

        return reconnecting_steadily(self.connection).ensure_connection(
            on_error, self.app.conf.broker_connection_max_retries
        )

    def tick(self, *args, **kwargs):
        """One pass of beat's loop; then the heartbeat file (BEAT_HEARTBEAT_FILE) is touched,
        so a container health check can tell a beat whose loop runs from one that hangs."""
        interval = super().tick(*args, **kwargs)
        if settings.BEAT_HEARTBEAT_FILE:
            try:
                Path(settings.BEAT_HEARTBEAT_FILE).touch()
            except OSError as exc:
                log.warning("beat.heartbeat_failed", error_class=type(exc).__name__)
        return interval
