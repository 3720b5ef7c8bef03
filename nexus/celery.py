"""The Celery app. Tasks run in the schema they were sent from: tenant-schemas-celery puts
the sender's schema in the `_schema_name` header and switches to it before the task runs,
so a task sent inside an organisation's context can only touch that organisation's data."""

from __future__ import annotations

import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nexus.settings")

app = CeleryApp("nexus")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
