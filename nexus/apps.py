from django.apps import AppConfig


class NexusConfig(AppConfig):
    name = "nexus"
    verbose_name = "NexusAPI platform"

    def ready(self) -> None:
        from nexus import schema  # noqa: F401  registers OpenAPI extensions

        _series_from_zero()


def _series_from_zero() -> None:
    """Every label combination of the counters alerts rate over, created at 0 when the
    process starts: a series born at 1 hides its first event from increase() and rate()."""
    from django.conf import settings

    # Creates the audits' outcome series at 0 on import, in every process: web serves them
    # before it has handled any audit request (the workers count them).
    import audits.metrics  # noqa: F401
    from nexus.celery import ENQUEUE_FAILURES

    for task in settings.CELERY_TASK_ROUTES:
        ENQUEUE_FAILURES.labels(task=task)
