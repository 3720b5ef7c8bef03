"""Providers: the local one is deterministic and useful; Gemini errors are classified,
tested through the real google-genai SDK against a local generateContent stand-in."""

import pytest

from jobs.providers import PermanentProviderError, TransientProviderError, provider_for
from jobs.providers.gemini import GeminiProvider
from jobs.providers.local import LocalProvider

TEXT = (
    "Our new onboarding flow is a great success. Customers love the faster setup and the support team "
    "reports fewer problems. However, the billing page is still slow and some users find it confusing.\n\n"
    "Next quarter we will improve the billing page and measure onboarding time again."
)


def test_local_summary_is_extractive_and_deterministic():
    first = LocalProvider().run("summarize", TEXT)
    second = LocalProvider().run("summarize", TEXT)
    assert first == second
    assert first.provider == "local"
    assert first.model == "extractive-v1"
    summary = first.output["summary"]
    assert summary
    assert all(sentence in TEXT for sentence in summary.split(". ") if sentence)


def test_local_analysis_has_sentiment_phrases_reading_time_and_statistics():
    output = LocalProvider().run("analyze", TEXT).output
    assert output["sentiment"]["label"] in {"positive", "neutral", "negative"}
    assert -1 <= output["sentiment"]["score"] <= 1
    assert "billing page" in output["key_phrases"]
    assert output["reading_time_seconds"] == 14  # 46 words at 200 wpm
    stats = output["statistics"]
    assert stats["words"] == 46
    assert stats["sentences"] == 4
    assert stats["paragraphs"] == 2
    assert stats["characters"] == len(TEXT)


def test_local_sentiment_reads_negation():
    assert (
        LocalProvider().run("analyze", "The release was not good.").output["sentiment"]["label"] == "negative"
    )
    assert (
        LocalProvider().run("analyze", "Great, fast and reliable.").output["sentiment"]["label"] == "positive"
    )


def test_unknown_provider_is_permanent():
    with pytest.raises(PermanentProviderError):
        provider_for("nonexistent")


@pytest.fixture
def gemini(settings, gemini_stub):
    settings.GEMINI_API_KEY = "test-key"
    settings.GEMINI_BASE_URL = gemini_stub.url
    settings.JOB_PROVIDER_TIMEOUT_SECONDS = 1
    return GeminiProvider()


def test_gemini_summary(gemini):
    result = gemini.run("summarize", "Some text.")
    assert result.output == {"summary": "A stand-in summary."}
    assert result.provider == "gemini"
    assert result.model == "gemini-2.5-flash"


def test_gemini_analysis_adds_local_statistics(gemini):
    output = gemini.run("analyze", TEXT).output
    assert output["sentiment"] == {"label": "positive", "score": 0.8}
    assert output["key_phrases"] == ["stub phrase"]
    assert output["statistics"]["words"] == 46


@pytest.mark.parametrize("marker", ["[rate-limit]", "[server-error]", "[hang]"])
def test_gemini_transient_errors(gemini, marker):
    with pytest.raises(TransientProviderError) as caught:
        gemini.run("summarize", f"text {marker}")
    assert "Gemini" in caught.value.message


@pytest.mark.parametrize("marker", ["[bad-request]", "[auth]", "[safety]"])
def test_gemini_permanent_errors(gemini, marker):
    with pytest.raises(PermanentProviderError):
        gemini.run("summarize", f"text {marker}")


def test_gemini_wrong_key_is_permanent(gemini, settings):
    settings.GEMINI_API_KEY = "wrong-key"
    with pytest.raises(PermanentProviderError, match="credentials"):
        GeminiProvider().run("summarize", "text")


def test_gemini_unreachable_is_transient(settings):
    settings.GEMINI_API_KEY = "test-key"
    settings.GEMINI_BASE_URL = "http://127.0.0.1:1"
    with pytest.raises(TransientProviderError, match="could not be reached"):
        GeminiProvider().run("summarize", "text")


def test_provider_error_messages_do_not_echo_the_response(gemini):
    with pytest.raises(TransientProviderError) as caught:
        gemini.run("summarize", "text [server-error]")
    assert "Internal error." not in caught.value.message
