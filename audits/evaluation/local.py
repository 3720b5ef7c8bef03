"""The evaluator used when no Gemini key is configured: deterministic, offline and fast. An
item is flagged when it holds one of the criteria's keywords, a word of the criteria itself
(longer than four letters, common words left out), a word of a small built-in lexicon or
something that looks like personal information (an email address, a phone number); the
reason names what matched.

Matching is unicode-aware and case-insensitive: texts and terms are compared in NFKC form,
case-folded (so "STRASSE" finds "straße", and a decomposed "café" the composed one), and a
term matches as a whole word: not inside a longer word, in any script. A term that starts
or ends with something other than a letter or digit (an emoji, "#tag", "c++"), or with a
character of a script written without spaces (Chinese, Japanese, Thai), needs no boundary
on that side.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from audits.evaluation.base import MAX_REASON_CHARS, OTHER, Criteria, EvaluationItem, Verdict
from jobs.providers.text_stats import STOPWORDS

# Placeholder words, mild on purpose: enough to show what an audit finds, offline.
LEXICON: dict[str, tuple[str, ...]] = {
    "profanity": ("damn", "crap", "heck", "bloody", "frick"),
    "offensive": ("idiot", "stupid", "moron", "loser", "dumb", "hate", "awful", "pathetic"),
    "political": (
        "vote",
        "election",
        "policy",
        "tax",
        "budget",
        "senate",
        "parliament",
        "government",
        "campaign",
    ),
    "unprofessional": ("lol", "omg", "wtf", "hungover", "drunk", "slacking"),
}
PERSONAL_INFORMATION = "personal_information"
_PERSONAL = (
    ("an email address", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")),
    ("a phone number", re.compile(r"(?<![\w+])\+?\d(?:[ .-]?\(?\d\)?){8,14}(?!\w)")),
)
# Words of a criteria that say how to audit rather than what to find.
_CRITERIA_STOPWORDS = frozenset(
    """
    anything something everything nothing items tweets posts texts messages content
    mention mentions mentioning contain contains containing flagged should would could
    which about their there these those where being other others might please things
    stuff related regarding including especially really whether might looks seems
    """.split()  # noqa: SIM905 - a word list reads better as text
)
_WORD = re.compile(r"[^\W\d_]+")
_WORD_CHAR = re.compile(r"\w")
# Scripts written without spaces between words (Thai, kana, CJK): a term in them has no
# word boundary to look for, so it matches inside a run of text.
_SPACELESS = re.compile(
    r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]"
)
MIN_CRITERIA_WORD_LETTERS = 5
NOT_FLAGGED_CONFIDENCE = 0.6


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _needs_boundary(char: str) -> bool:
    return bool(_WORD_CHAR.match(char)) and not _SPACELESS.match(char)


def _term_pattern(term: str) -> str:
    before = r"(?<!\w)" if _needs_boundary(term[0]) else ""
    after = r"(?!\w)" if _needs_boundary(term[-1]) else ""
    return f"{before}{re.escape(term)}{after}"


def _alternation(terms: list[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    # Longest first, so "tax policy" wins over "tax" where both could match.
    ordered = sorted(set(terms), key=lambda term: (-len(term), term))
    return re.compile("|".join(_term_pattern(term) for term in ordered))


@dataclass(frozen=True)
class _Matcher:
    keywords: re.Pattern[str] | None
    keyword_names: dict[str, str]  # normalised -> as the criteria wrote it
    criteria_words: re.Pattern[str] | None
    lexicon: re.Pattern[str] | None
    lexicon_categories: dict[str, str]  # word -> category
    personal: bool


@functools.lru_cache(maxsize=64)
def _matcher(criteria: Criteria) -> _Matcher:
    keyword_names: dict[str, str] = {}
    for keyword in criteria.keywords:
        normalised = normalise(keyword.strip())
        if normalised:
            keyword_names.setdefault(normalised, keyword.strip())
    words = [
        word
        for word in _WORD.findall(normalise(criteria.text))
        if len(word) >= MIN_CRITERIA_WORD_LETTERS
        and word not in STOPWORDS
        and word not in _CRITERIA_STOPWORDS
    ]
    allowed = set(criteria.categories)
    lexicon_categories = {
        word: category for category, lexicon in LEXICON.items() if category in allowed for word in lexicon
    }
    lexicon = None
    if lexicon_categories:
        alternatives = "|".join(sorted(lexicon_categories, key=lambda word: (-len(word), word)))
        lexicon = re.compile(rf"(?<!\w)({alternatives})(?:e?s)?(?!\w)")  # a plural too
    return _Matcher(
        keywords=_alternation(list(keyword_names)),
        keyword_names=keyword_names,
        criteria_words=_alternation(words),
        lexicon=lexicon,
        lexicon_categories=lexicon_categories,
        personal=PERSONAL_INFORMATION in allowed,
    )


def _distinct(found: list[str]) -> list[str]:
    return list(dict.fromkeys(found))


def _quoted(terms: list[str]) -> str:
    return ", ".join(f'"{term}"' for term in terms)


def _verdict(item: EvaluationItem, criteria: Criteria, matcher: _Matcher) -> Verdict:
    text = normalise(item.text)
    parts: list[str] = []
    categories: set[str] = set()
    terms: set[str] = set()  # what matched, once each, whichever list it came from
    if matcher.keywords is not None:
        keywords = _distinct([matcher.keyword_names[m.group(0)] for m in matcher.keywords.finditer(text)])
        if keywords:
            parts.append(f"{'keyword' if len(keywords) == 1 else 'keywords'} {_quoted(keywords)}")
            terms.update(normalise(keyword) for keyword in keywords)
    if matcher.lexicon is not None:
        by_category: dict[str, list[str]] = {}
        for match in matcher.lexicon.finditer(text):
            word = match.group(1)
            by_category.setdefault(matcher.lexicon_categories[word], []).append(word)
        for category in criteria.categories:
            if words := _distinct(by_category.get(category, [])):
                parts.append(f"{category.replace('_', ' ')} {_quoted(words)}")
                categories.add(category)
                terms.update(words)
    if matcher.personal:
        found = [label for label, pattern in _PERSONAL if pattern.search(item.text)]
        if found:
            parts.append(f"personal information ({' and '.join(found)})")
            categories.add(PERSONAL_INFORMATION)
            terms.update(found)
    if matcher.criteria_words is not None:
        words = _distinct([m.group(0) for m in matcher.criteria_words.finditer(text)])
        if words:
            parts.append(f"{'a word' if len(words) == 1 else 'words'} of the criteria {_quoted(words)}")
            terms.update(words)
    if not terms:
        return Verdict(
            item_id=item.id,
            flagged=False,
            reason="No keyword, word of the criteria or listed word found.",
            categories=(),
            confidence=NOT_FLAGGED_CONFIDENCE,
        )
    chosen = tuple(name for name in criteria.categories if name in categories)
    if not chosen and OTHER in criteria.categories:
        chosen = (OTHER,)
    reason = "Matched " + "; ".join(parts) + "."
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    return Verdict(
        item_id=item.id,
        flagged=True,
        reason=reason,
        categories=chosen,
        confidence=round(min(0.95, 0.55 + 0.1 * len(terms)), 2),
    )


class LocalEvaluator:
    name = "local"
    model = "local-lexicon-1"

    def evaluate(self, items: list[EvaluationItem], criteria: Criteria) -> list[Verdict]:
        # Tuples, whatever sequences the caller used: the matcher is cached by criteria.
        criteria = Criteria(criteria.text, tuple(criteria.keywords), tuple(criteria.categories))
        matcher = _matcher(criteria)
        return [_verdict(item, criteria, matcher) for item in items]
