"""Deterministic text analysis shared by the providers: sentence splitting, statistics,
reading time, key phrases, lexicon sentiment and an extractive summary."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

WORDS_PER_MINUTE = 200

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each few
    for from further had has have having he her here hers herself him himself his how i if
    in into is it its itself just me more most my myself no nor not now of off on once only
    or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until
    up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves one two may might must shall us new
    """.split()  # noqa: SIM905 - a word list reads better as text
)

POSITIVE = frozenset(
    """
    good great excellent amazing awesome best better happy love loved like liked enjoy
    enjoyed pleasant positive success successful win wins won benefit benefits improve
    improved improvement growth strong fast easy helpful reliable wonderful fantastic
    outstanding impressive efficient secure stable profit profitable gain gains glad
    delighted satisfied recommend praise superb brilliant effective progress
    """.split()  # noqa: SIM905 - a word list reads better as text
)
NEGATIVE = frozenset(
    """
    bad poor terrible awful worst worse sad hate hated dislike problem problems issue issues
    fail failed failure failing loss losses slow difficult hard broken bug bugs error errors
    crash crashed risk risks negative weak decline declined delay delayed expensive angry
    disappointed disappointing unreliable insecure unstable complaint complaints concern
    concerns painful frustrating frustrated wrong
    """.split()  # noqa: SIM905 - a word list reads better as text
)
NEGATIONS = frozenset({"not", "no", "never", "without", "hardly", "isn't", "wasn't", "don't", "doesn't"})


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def statistics(text: str) -> dict:
    all_words = words(text)
    all_sentences = sentences(text)
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return {
        "characters": len(text),
        "words": len(all_words),
        "sentences": len(all_sentences),
        "paragraphs": len(paragraphs),
        "average_word_length": round(sum(map(len, all_words)) / len(all_words), 2) if all_words else 0.0,
        "average_sentence_words": round(len(all_words) / len(all_sentences), 2) if all_sentences else 0.0,
    }


def reading_time_seconds(text: str) -> int:
    return math.ceil(len(words(text)) / WORDS_PER_MINUTE * 60)


def _content_words(text: str) -> list[str]:
    return [w.lower() for w in words(text) if w.lower() not in STOPWORDS and len(w) > 2]


def key_phrases(text: str, limit: int = 5) -> list[str]:
    tokens = [w.lower() for w in words(text)]
    counts: Counter[str] = Counter()
    for first, second in itertools.pairwise(tokens):
        if first not in STOPWORDS and second not in STOPWORDS and len(first) > 2 and len(second) > 2:
            counts[f"{first} {second}"] += 2
    for word in _content_words(text):
        counts[word] += 1
    # Most frequent first; ties broken alphabetically so the result is deterministic.
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    chosen: list[str] = []
    for phrase, _count in ranked:
        if any(phrase in kept or kept in phrase for kept in chosen):
            continue
        chosen.append(phrase)
        if len(chosen) == limit:
            break
    return chosen


def sentiment(text: str) -> dict:
    tokens = [w.lower() for w in words(text)]
    score = 0
    hits = 0
    for index, token in enumerate(tokens):
        polarity = 1 if token in POSITIVE else -1 if token in NEGATIVE else 0
        if not polarity:
            continue
        if any(t in NEGATIONS for t in tokens[max(0, index - 3) : index]):
            polarity = -polarity
        score += polarity
        hits += 1
    value = round(score / hits, 3) if hits else 0.0
    label = "positive" if value > 0.2 else "negative" if value < -0.2 else "neutral"
    return {"label": label, "score": value}


def extractive_summary(text: str, max_sentences: int = 3) -> str:
    all_sentences = sentences(text)
    if len(all_sentences) <= max_sentences:
        return " ".join(all_sentences)
    frequencies = Counter(_content_words(text))
    scored = []
    for index, sentence in enumerate(all_sentences):
        content = _content_words(sentence)
        score = sum(frequencies[w] for w in content) / (len(content) or 1)
        scored.append((score, -index, index))
    top = sorted(scored, reverse=True)[:max_sentences]
    return " ".join(all_sentences[index] for _, _, index in sorted(top, key=lambda item: item[2]))
