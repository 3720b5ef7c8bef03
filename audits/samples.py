"""Generated X archives, as X exports them, with the tweets they hold: for the tests, the
demo and the benchmark. Deterministic by seed; no Django, nothing read from disk.

The file is X's `data/tweets.js`: `window.YTD.tweets.part0 = [`, then one
`{"tweet": {...}}` object per tweet, pretty-printed the way X prints them (`"key" : value`,
`[ ]` for an empty list), `full_text` with &, < and > as HTML entities.
"""

from __future__ import annotations

import functools
import io
import random
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring  # json's own string quoting, non-ASCII kept
from typing import IO, Any

FIRST_ID = 1_790_000_000_000_000_000
START = datetime(2024, 6, 1, 18, 30, 0, tzinfo=UTC)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Words of several kinds, so that an audit has something to flag (harsh and political words)
# and scripts, accents and emoji to carry through byte for byte.
_PLAIN = ("the", "a", "meeting", "today", "coffee", "release", "deploy", "weekend", "hello", "thanks")
_PLAIN_MORE = ("why", "never", "always", "love", "team", "launch", "bug", "fix", "it's", "don't", "great")
_HARSH = ("idiot", "stupid", "awful", "hate")
_POLITICAL = ("vote", "election", "policy", "tax", "budget")
_ACCENTED = ("café", "naïve", "über", "straße", "façade", "jalapeño", "ñandú", "Zoë", "résumé", "coöperate")
_SCRIPTS = ("東京", "ラーメン", "你好", "привет", "مرحبا", "שלום", "γειά")
_WORDS = _PLAIN + _PLAIN_MORE + _HARSH + _POLITICAL + _ACCENTED + _SCRIPTS
_EMOJI = ("😀", "🙈", "🔥", "👍🏽", "❤️", "🇫🇷", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🤦‍♀️", "✅", "☕")
_EMOJI += ("\U0001d54f",)  # a mathematical X: four bytes in UTF-8, two UTF-16 code units
_PUNCTUATION = (",", ", and", '"quoted"', "“curly”", "it's", "a & b", "<3", "x > y", "a < b", "\\o/")
_PUNCTUATION += ("50%", "...", "—", "\n", "\n\n", "&amp;", "&lt;tag&gt;")
# Texts that a spreadsheet would take for a formula when they start a cell.
_FORMULA_STARTS = ("=SUM(A1:A9)", '=HYPERLINK("http://example.test")', "+1 agreed", "-5 degrees", "@here")
_NAMES = ("alice", "bob_dev", "carol", "dave99", "eve", "NexusNews", "frank_ops", "grace")
_SOURCES = (
    '<a href="https://mobile.twitter.com" rel="nofollow">Twitter Web App</a>',
    '<a href="http://twitter.com/download/iphone" rel="nofollow">Twitter for iPhone</a>',
    '<a href="http://twitter.com/download/android" rel="nofollow">Twitter for Android</a>',
)
_LANGS = ("en", "fr", "de", "ja", "und", "es")
_TAG = re.compile(r"#\w+")
_MENTION = re.compile(r"@(\w+)", re.ASCII)
_LINK = re.compile(r"https://t\.co/\w+", re.ASCII)


@dataclass(frozen=True, slots=True)
class SampleTweet:
    id_str: str
    text: str  # as written; the file holds it HTML-escaped, as X does
    created_at: datetime
    is_retweet: bool
    is_reply: bool
    reply_to_id: str = ""
    reply_to_name: str = ""
    source: str = ""
    lang: str = "en"
    favorite_count: int = 0
    retweet_count: int = 0

    @property
    def url(self) -> str:
        return f"https://x.com/i/web/status/{self.id_str}"


def x_date(moment: datetime) -> str:
    """X's `Wed Oct 10 20:19:24 +0000 2018`, whatever the locale."""
    moment = moment.astimezone(UTC)
    return (
        f"{_DAYS[moment.weekday()]} {_MONTHS[moment.month - 1]} {moment.day:02d} "
        f"{moment:%H:%M:%S} +0000 {moment.year}"
    )


def _text(rng: random.Random, *, long: bool) -> str:
    size = rng.randint(1500, 1800) if long else rng.randint(2, 30)
    tokens = []
    for _ in range(size):
        roll = rng.random()
        if roll < 0.55:
            tokens.append(rng.choice(_WORDS))
        elif roll < 0.70:
            tokens.append(rng.choice(_EMOJI))
        elif roll < 0.85:
            tokens.append(rng.choice(_PUNCTUATION))
        elif roll < 0.90:
            tokens.append("#" + rng.choice(_WORDS).replace("'", ""))
        elif roll < 0.95:
            tokens.append("@" + rng.choice(_NAMES))
        else:
            tokens.append(f"https://t.co/{rng.getrandbits(40):010x}")
    text = " ".join(tokens).strip() or "hello"
    if rng.random() < 0.08:
        text = f"{rng.choice(_FORMULA_STARTS)} {text}"
    return text


def sample_tweets(
    n: int,
    *,
    seed: int = 0,
    retweet_share: float = 0.1,
    reply_share: float = 0.2,
    long_share: float = 0.002,
) -> Iterator[SampleTweet]:
    """The tweets x_archive_js(n, same arguments) writes, newest first as X lists them.
    A share of them are long posts (X Premium's, over 10,000 characters)."""
    # Sample data, not a secret: a seeded generator is the point.
    rng = random.Random(seed)  # noqa: S311  # nosec B311
    moment = START
    for index in range(n):
        moment -= timedelta(seconds=rng.randint(30, 6 * 3600))
        tweet_id = str(FIRST_ID - index * 4_096_000 - rng.randint(0, 4_095_999))
        roll = rng.random()
        is_retweet = roll < retweet_share
        is_reply = not is_retweet and roll < retweet_share + reply_share
        text = _text(rng, long=rng.random() < long_share)
        reply_to_id = reply_to_name = ""
        if is_retweet:
            text = f"RT @{rng.choice(_NAMES)}: {text}"
            if len(text) > 140:
                text = text[:139] + "…"
        elif is_reply:
            reply_to_name = rng.choice(_NAMES)
            reply_to_id = str(FIRST_ID - rng.randint(0, 10**15))
            text = f"@{reply_to_name} {text}"
        yield SampleTweet(
            id_str=tweet_id,
            text=text,
            created_at=moment,
            is_retweet=is_retweet,
            is_reply=is_reply,
            reply_to_id=reply_to_id,
            reply_to_name=reply_to_name,
            source=rng.choice(_SOURCES),
            lang=rng.choice(_LANGS),
            favorite_count=int(rng.expovariate(0.2)),
            retweet_count=int(rng.expovariate(0.5)),
        )


@functools.cache
def _user_id(name: str) -> str:
    return str(10_000_000 + sum(ord(char) * 31**i for i, char in enumerate(name)) % 10**9)


def x_tweet(sample: SampleTweet) -> dict[str, Any]:
    """The tweet object X's archive holds for a sample, with X's fields in X's order."""
    text = sample.text
    hashtags = [
        {"text": match.group()[1:], "indices": [str(match.start()), str(match.end())]}
        for match in (_TAG.finditer(text) if "#" in text else ())
    ]
    mentions = [
        {
            "name": match.group(1).title(),
            "screen_name": match.group(1),
            "indices": [str(match.start()), str(match.end())],
            "id_str": _user_id(match.group(1)),
            "id": _user_id(match.group(1)),
        }
        for match in (_MENTION.finditer(text) if "@" in text else ())
    ]
    urls = [
        {
            "url": match.group(),
            "expanded_url": f"https://example.test/{match.group()[-10:]}",
            "display_url": f"example.test/{match.group()[-10:]}",
            "indices": [str(match.start()), str(match.end())],
        }
        for match in (_LINK.finditer(text) if "https://t.co/" in text else ())
    ]
    tweet: dict[str, Any] = {
        "edit_info": {
            "initial": {
                "editTweetIds": [sample.id_str],
                "editableUntil": f"{sample.created_at + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}.000Z",
                "editsRemaining": "5",
                "isEditEligible": not (sample.is_retweet or sample.is_reply),
            }
        },
        "retweeted": False,  # X's archives say false even for retweets: "RT @" tells them
        "source": sample.source,
        "entities": {"hashtags": hashtags, "symbols": [], "user_mentions": mentions, "urls": urls},
        "display_text_range": ["0", str(len(text))],
        "favorite_count": str(sample.favorite_count),
    }
    if sample.is_reply:
        tweet["in_reply_to_status_id_str"] = sample.reply_to_id
    tweet["id_str"] = sample.id_str
    if sample.is_reply:
        tweet["in_reply_to_user_id"] = _user_id(sample.reply_to_name)
    tweet |= {"truncated": False, "retweet_count": str(sample.retweet_count), "id": sample.id_str}
    if sample.is_reply:
        tweet["in_reply_to_status_id"] = sample.reply_to_id
    tweet |= {
        "created_at": x_date(sample.created_at),
        "favorited": False,
        "full_text": text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
        "lang": sample.lang,
    }
    if sample.is_reply:
        tweet["in_reply_to_screen_name"] = sample.reply_to_name
        tweet["in_reply_to_user_id_str"] = _user_id(sample.reply_to_name)
    return tweet


def x_pretty(value: Any, pad: str = "") -> str:
    """JSON as X prints it: two-space indent, `"key" : value`, `[ ]` and `{ }` when empty."""
    if isinstance(value, str):
        return encode_basestring(value)
    if isinstance(value, dict):
        if not value:
            return "{ }"
        inner = pad + "  "
        fields = ",\n".join(
            f"{inner}{encode_basestring(key)} : {x_pretty(item, inner)}" for key, item in value.items()
        )
        return "{\n" + fields + "\n" + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[ ]"
        inner = pad + "  "
        return "[\n" + ",\n".join(inner + x_pretty(item, inner) for item in value) + "\n" + pad + "]"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


def write_x_archive_js(out: IO[bytes], samples: Iterator[SampleTweet], *, part: int = 0) -> None:
    """Write X's tweets.js for the samples to a binary stream, one tweet at a time."""
    out.write(f"window.YTD.tweets.part{part} = [".encode())
    separator = "\n  "
    for sample in samples:
        out.write((separator + x_pretty({"tweet": x_tweet(sample)}, "  ")).encode())
        separator = ",\n  "
    out.write(b"\n]" if separator != "\n  " else b" ]")


def x_archive_js(
    n: int,
    *,
    seed: int = 0,
    retweet_share: float = 0.1,
    reply_share: float = 0.2,
    long_share: float = 0.002,
) -> bytes:
    """X's `data/tweets.js` holding sample_tweets(n, same arguments)."""
    out = io.BytesIO()
    samples = sample_tweets(
        n, seed=seed, retweet_share=retweet_share, reply_share=reply_share, long_share=long_share
    )
    write_x_archive_js(out, samples)
    return out.getvalue()


def x_archive_zip(
    n: int,
    *,
    seed: int = 0,
    retweet_share: float = 0.1,
    reply_share: float = 0.2,
    long_share: float = 0.002,
    parts: int = 1,
    folder: str = "",
) -> bytes:
    """X's archive zip holding sample_tweets(n, same arguments): `data/tweets.js` and, when
    `parts` > 1, `data/tweets-part1.js` ... (the tweets split evenly, in order), beside the
    other files an archive has (account, deleted tweets, tweet headers, a media file,
    the HTML viewer), each under `folder`."""
    samples = list(
        sample_tweets(
            n, seed=seed, retweet_share=retweet_share, reply_share=reply_share, long_share=long_share
        )
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{folder}Your archive.html", "<!DOCTYPE html><title>Your archive</title>")
        archive.writestr(
            f"{folder}data/manifest.js",
            'window.__THAR_CONFIG = {"dataTypes": {"tweets": {"files": [{"fileName": "data/tweets.js"}]}}}',
        )
        archive.writestr(
            f"{folder}data/account.js",
            'window.YTD.account.part0 = [ {"account": {"username": "nexus_sample", "accountId": "42"}} ]',
        )
        # Files that are not the tweets and must not be read as them: the same ids again.
        for name, label in (("deleted-tweets", "deleted_tweets"), ("tweet-headers", "tweet_headers")):
            member = io.BytesIO()
            write_x_archive_js(member, iter(samples[:3]))
            archive.writestr(
                f"{folder}data/{name}.js", member.getvalue().replace(b"YTD.tweets.", f"YTD.{label}.".encode())
            )
        picture = random.Random(seed).randbytes(2048)  # noqa: S311  # nosec B311
        archive.writestr(f"{folder}data/tweets_media/{FIRST_ID}-sample.jpg", picture)
        size = -(-n // parts) if n else 0
        for part in range(parts):
            member = io.BytesIO()
            write_x_archive_js(member, iter(samples[part * size : (part + 1) * size]), part=part)
            name = "tweets.js" if part == 0 else f"tweets-part{part}.js"
            archive.writestr(f"{folder}data/{name}", member.getvalue())
    return out.getvalue()
