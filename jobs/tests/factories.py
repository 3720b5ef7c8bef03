"""Jobs for tests, made through jobs.services: every job a test holds is one the product
could have made (charged, with its events). Call inside the organisation's schema, as the
services expect."""

from __future__ import annotations

from jobs import services
from jobs.models import Job
from tenants.models import User

TEXT = "Hello there. This is a text."


def job_create(*, user: User, job_type: str = "summarize", text: str = TEXT, provider: str = "local") -> Job:
    return services.job_create(user=user, job_type=job_type, text=text, provider=provider)
