"""The provider used when no Gemini key is configured: deterministic, offline, and useful
(an extractive summary; sentiment, key phrases, reading time and statistics)."""

from __future__ import annotations

from jobs.providers import text_stats
from jobs.providers.base import PermanentProviderError, ProviderResult, TransientProviderError


class LocalProvider:
    name = "local"
    model = "extractive-v1"

    def run(self, job_type: str, text: str) -> ProviderResult:
        if job_type == "summarize":
            output = {"summary": text_stats.extractive_summary(text)}
        elif job_type == "analyze":
            output = {
                "sentiment": text_stats.sentiment(text),
                "key_phrases": text_stats.key_phrases(text),
                "reading_time_seconds": text_stats.reading_time_seconds(text),
                "statistics": text_stats.statistics(text),
            }
        else:
            raise PermanentProviderError(f"The local provider cannot run {job_type!r} jobs.")
        return ProviderResult(output=output, provider=self.name, model=self.model)


class AlwaysFailsProvider:
    """Fails every attempt with a transient error. Used by `manage.py demo_failed_job` to
    show retries and the refund end to end; no API can select it."""

    name = "always-fails"
    model = "none"

    def run(self, job_type: str, text: str) -> ProviderResult:
        raise TransientProviderError("The demo provider always fails (simulated outage).")
