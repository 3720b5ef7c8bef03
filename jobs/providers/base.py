"""What a provider is: run(job_type, text) -> ProviderResult, raising a Transient or
Permanent error. The worker retries only transient ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ProviderResult:
    output: dict
    provider: str
    model: str


class ProviderError(Exception):
    transient = False

    def __init__(self, message: str):
        # The message is shown to the job's owner: it must say what happened without
        # carrying the provider's raw response (which may echo keys or internals).
        self.message = message
        super().__init__(message)


class TransientProviderError(ProviderError):
    """Timeouts, connection failures, rate limits, server errors: worth another attempt."""

    transient = True


class PermanentProviderError(ProviderError):
    """Invalid requests, authentication problems, safety blocks: retrying cannot help."""


class Provider(Protocol):
    name: str
    model: str

    def run(self, job_type: str, text: str) -> ProviderResult: ...
