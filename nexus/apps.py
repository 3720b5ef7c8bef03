from django.apps import AppConfig


class NexusConfig(AppConfig):
    name = "nexus"
    verbose_name = "NexusAPI platform"

    def ready(self) -> None:
        from nexus import schema  # noqa: F401  registers OpenAPI extensions
