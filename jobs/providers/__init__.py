"""Provider registry. A job records the provider chosen when it was created, and every
attempt runs on that provider."""

from __future__ import annotations

from django.conf import settings

from jobs.providers.base import (
    PermanentProviderError,
    Provider,
    ProviderError,
    ProviderResult,
    TransientProviderError,
)

__all__ = [
    "PermanentProviderError",
    "Provider",
    "ProviderError",
    "ProviderResult",
    "TransientProviderError",
    "default_provider_name",
    "provider_for",
]


def default_provider_name() -> str:
    return "gemini" if settings.GEMINI_API_KEY else "local"


def provider_for(name: str) -> Provider:
    if name == "gemini":
        from jobs.providers.gemini import GeminiProvider

        if not settings.GEMINI_API_KEY:
            raise PermanentProviderError("Gemini is no longer configured on this server.")
        return GeminiProvider()
    if name == "local":
        from jobs.providers.local import LocalProvider

        return LocalProvider()
    if name == "always-fails":
        from jobs.providers.local import AlwaysFailsProvider

        return AlwaysFailsProvider()
    raise PermanentProviderError(f"Unknown provider {name!r}.")
