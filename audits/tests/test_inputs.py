"""Reading uploads for audits: X's tweets.js (alone or in the archive's zip) and CSV, item
by item with bounded memory, every problem refused with the item or line that has it."""

from __future__ import annotations

import contextlib
import io
import json
import random
import struct
import tracemalloc
import zipfile
from datetime import UTC, datetime, timedelta, timezone

import pytest

from audits.inputs import (
    KIND_CSV,
    KIND_TWEETS_JS,
    KIND_ZIP,
    InputError,
    TooManyItems,
    _MemberReader,
    detect_kind,
    parse_csv,
    parse_file,
    parse_x_archive,
    parse_x_archive_zip,
    parse_x_date,
)
from audits.samples import SampleTweet, sample_tweets, x_archive_js, x_archive_zip, x_pretty

MAX_ITEMS = 100_000
MAX_CHARS = 10_000
MiB = 1024 * 1024


def _expected(samples: list[SampleTweet], *, max_chars: int = MAX_CHARS) -> list[tuple]:
    return [
        (
            s.id_str,
            s.text[:max_chars],
            s.url,
            s.created_at,
            s.is_retweet,
            s.is_reply,
            len(s.text) > max_chars,
        )
        for s in samples
    ]


def _got(items) -> list[tuple]:
    return [
        (i.external_id, i.text, i.url, i.created_at, i.is_retweet, i.is_reply, i.truncated) for i in items
    ]


def _js(stream, **options):
    options = {"max_items": MAX_ITEMS, "max_item_chars": MAX_CHARS} | options
    return parse_x_archive(stream, **options)


def _js_doc(*objects, prefix: str = "window.YTD.tweets.part0 = ", end: str = "\n]") -> bytes:
    body = ",\n".join("  " + (o if isinstance(o, str) else x_pretty(o, "  ")) for o in objects)
    return f"{prefix}[\n{body}{end}".encode()


def _tweet(id_str="1", text="hello", **fields) -> dict:
    tweet = {"id_str": id_str, "full_text": text, "created_at": "Wed Oct 10 20:19:24 +0000 2018"}
    return {"tweet": {key: value for key, value in (tweet | fields).items() if value is not None}}


def _js_error(data: bytes, **options) -> InputError:
    with pytest.raises(InputError) as caught:
        list(_js(io.BytesIO(data), **options))
    return caught.value


class _Pieces:
    """A binary stream that hands out the given pieces, one per read: chunk boundaries
    exactly where a test wants them."""

    def __init__(self, *pieces: bytes):
        self._pieces = [piece for piece in pieces if piece]

    def read(self, size: int = -1) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""


# --- tweets.js --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples_3000():
    return list(sample_tweets(3000, seed=11))


@pytest.fixture(scope="module")
def archive_3000():
    return x_archive_js(3000, seed=11)


def test_the_generated_archive_is_varied_enough_to_prove_something(samples_3000):
    texts = [s.text for s in samples_3000]
    assert any("👨‍👩‍👧‍👦" in t for t in texts) and any("\U0001d54f" in t for t in texts)
    assert any("\n" in t for t in texts) and any('"' in t for t in texts) and any("," in t for t in texts)
    assert any("&lt;" in t for t in texts) and any("<" in t for t in texts)  # literal entities too
    for start in "=+-@":
        assert any(t.startswith(start) for t in texts)
    assert any(len(t) > MAX_CHARS for t in texts)
    assert 200 < sum(s.is_retweet for s in samples_3000) < 400
    assert 450 < sum(s.is_reply for s in samples_3000) < 750
    assert len({s.id_str for s in samples_3000}) == 3000


@pytest.mark.parametrize("chunk_bytes", [64 * 1024, 1000])
def test_a_generated_archive_parses_to_exactly_its_tweets(samples_3000, archive_3000, chunk_bytes):
    result = _js(io.BytesIO(archive_3000), chunk_bytes=chunk_bytes)
    assert _got(result) == _expected(samples_3000)
    assert (result.count, result.skipped) == (3000, 0)
    assert result.input_kind == "x_archive"


@pytest.mark.parametrize(("chunk_bytes", "count"), [(1, 60), (7, 300)])
def test_tiny_chunks_split_objects_and_characters_without_changing_a_byte(chunk_bytes, count):
    samples = list(sample_tweets(count, seed=5, long_share=0))
    data = x_archive_js(count, seed=5, long_share=0)
    assert any(len(s.text.encode()) != len(s.text) for s in samples)  # multi-byte characters to split
    assert _got(_js(io.BytesIO(data), chunk_bytes=chunk_bytes)) == _expected(samples)


def test_an_object_split_at_any_byte_is_read_whole():
    # Escapes, numbers and literals that a cut can leave looking like an error.
    tweet = _tweet("77", 'caf\u00e9 \U0001f600 "q" \\ \n &amp; end', n=-1.5e10, t=True, f=False, x=None)
    escaped = json.dumps(tweet, ensure_ascii=True)  # \ud83d\ude00, \u00e9
    for body in (x_pretty(tweet, "  "), escaped):
        data = _js_doc(body)
        for cut in range(1, len(data)):
            items = list(_js(_Pieces(data[:cut], data[cut:])))
            assert [(i.external_id, i.text) for i in items] == [("77", 'café 😀 "q" \\ \n & end')], cut


def test_x_html_entities_are_undone_exactly():
    data = _js_doc(_tweet("1", "a &amp;lt; b &lt;3 &gt; c &amp;amp; d"))
    assert next(_js(io.BytesIO(data))).text == "a &lt; b <3 > c &amp; d"


def test_skip_options_count_what_they_leave_out(samples_3000, archive_3000):
    retweets = sum(s.is_retweet for s in samples_3000)
    replies = sum(s.is_reply for s in samples_3000)

    result = _js(io.BytesIO(archive_3000), skip_retweets=True)
    assert _got(result) == _expected([s for s in samples_3000 if not s.is_retweet])
    assert (result.count, result.skipped_retweets, result.skipped_replies) == (3000 - retweets, retweets, 0)

    result = _js(io.BytesIO(archive_3000), skip_retweets=True, skip_replies=True)
    assert _got(result) == _expected([s for s in samples_3000 if not (s.is_retweet or s.is_reply)])
    assert (result.skipped_retweets, result.skipped_replies, result.skipped) == (
        retweets,
        replies,
        retweets + replies,
    )


def test_retweets_and_replies_are_recognised_by_every_sign_x_gives():
    data = _js_doc(
        _tweet("1", "plain"),
        _tweet("2", "RT @someone: hi"),
        _tweet("3", "quoted", retweeted=True),
        _tweet("4", "old style", retweeted_status={"id_str": "9"}),
        _tweet("5", "@bob yes", in_reply_to_status_id_str="99"),
        _tweet("6", "@bob no", in_reply_to_status_id_str=""),
    )
    flags = [(i.external_id, i.is_retweet, i.is_reply) for i in _js(io.BytesIO(data))]
    assert flags == [
        ("1", False, False),
        ("2", True, False),
        ("3", True, False),
        ("4", True, False),
        ("5", False, True),
        ("6", False, False),
    ]


def test_the_older_format_without_the_tweet_wrapper_and_text_instead_of_full_text():
    data = _js_doc(
        {"id_str": "10", "full_text": "old", "created_at": "Mon Jan 01 00:00:00 +0000 2018"},
        {"id_str": "11", "text": "older still"},
        prefix="window.YTD.tweet.part0 = ",
        end="\n];\n",
    )
    items = list(_js(io.BytesIO(data)))
    assert [(i.external_id, i.text, i.created_at) for i in items] == [
        ("10", "old", datetime(2018, 1, 1, tzinfo=UTC)),
        ("11", "older still", None),
    ]


def test_a_text_longer_than_the_limit_is_cut_and_says_so():
    data = _js_doc(_tweet("1", "x" * 50), _tweet("2", "y" * 20))
    items = list(_js(io.BytesIO(data), max_item_chars=20))
    assert [(len(i.text), i.truncated) for i in items] == [(20, True), (20, False)]


def test_nul_and_lone_surrogates_become_replacement_characters():
    data = _js_doc('{"tweet": {"id_str": "1", "full_text": "a\\u0000b\\ud800c \\ud83d\\ude00"}}')
    assert next(_js(io.BytesIO(data))).text == "a\ufffdb\ufffdc 😀"


def test_more_items_than_the_limit_is_too_many_items():
    data = x_archive_js(30, seed=2)
    assert len(list(_js(io.BytesIO(data), max_items=30))) == 30
    with pytest.raises(TooManyItems) as caught:
        list(_js(io.BytesIO(data), max_items=29))
    error = caught.value
    assert (error.code, error.count, error.limit) == ("TOO_MANY_ITEMS", 30, 29)
    assert error.details == {"count": 30, "limit": 29}
    assert "more than 29 items" in error.message


def test_the_limit_counts_items_after_the_skips():
    samples = list(sample_tweets(40, seed=3))
    kept = sum(not s.is_retweet for s in samples)
    data = x_archive_js(40, seed=3)
    assert len(list(_js(io.BytesIO(data), max_items=kept, skip_retweets=True))) == kept
    with pytest.raises(TooManyItems):
        list(_js(io.BytesIO(data), max_items=kept - 1, skip_retweets=True))


OK = _tweet("100", "fine")


@pytest.mark.parametrize(
    ("second", "message", "details"),
    [
        (
            '{"tweet": {"id_str": "2" "full_text": "b"}}',
            "Item 2 (line 9) is not valid JSON: Expecting ',' delimiter on line 9.",
            {"item": 2, "line": 9},
        ),
        (_tweet(None), "Item 2 (line 9) has no id_str.", {"item": 2, "line": 9}),
        (
            _tweet("12a"),
            'Item 2 (line 9) has an id_str that is not a string of 1 to 20 digits: "12a".',
            {"item": 2, "line": 9},
        ),
        (
            {"tweet": {"id_str": 12, "full_text": "x"}},
            "Item 2 (line 9) has an id_str that is not a string of 1 to 20 digits: 12.",
            {"item": 2, "line": 9},
        ),
        (
            _tweet("7", None),
            "Item 2 (id 7, line 9) has no full_text.",
            {"item": 2, "item_id": "7", "line": 9},
        ),
        (_tweet("7", ["x"]), "Item 2 (id 7, line 9) has a full_text that is not a string.", None),
        (_tweet("7", "  \n "), "Item 2 (id 7, line 9) has an empty full_text.", None),
        (
            _tweet("7", created_at="2018-10-10 20:19:24"),
            "Item 2 (id 7, line 9) has a created_at that is not X's date format "
            "(like 'Wed Oct 10 20:19:24 +0000 2018'): \"2018-10-10 20:19:24\".",
            None,
        ),
        (
            _tweet("7", created_at="Wed Feb 30 20:19:24 +0000 2018"),
            "Item 2 (id 7, line 9) has a created_at that is not X's date format",
            None,
        ),
        (
            _tweet("100"),
            "Item 2 (id 100, line 9) repeats the id of an earlier item.",
            {"item": 2, "item_id": "100", "line": 9},
        ),
        ({"tweet": "nope"}, "Item 2 (line 9) has a tweet that is not a JSON object.", None),
        ('"just a string"', "Item 2 (line 9) is not a JSON object: it starts with '\"'.", None),
        ("[1, 2]", "Item 2 (line 9) is not a JSON object: it starts with '['.", None),
    ],
)
def test_each_problem_of_an_item_is_named_with_its_number_id_and_line(second, message, details):
    error = _js_error(_js_doc(OK, second))
    assert error.code == "INVALID_FILE"
    assert error.message.startswith(message)
    if details is not None:
        assert error.details == details


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file does not start as X's tweets.js does (window.YTD.tweets.part0 = [)."),
        (b"id,text\n1,hello\n", "The file does not start as X's tweets.js does"),
        (b"window.YTD.tweets.part0 = {}", "The file does not start as X's tweets.js does"),
        (b"window.YTD.tweets.part0 = [ ]", "The archive holds no tweets."),
        (_js_doc(OK)[:-40], "The file ends inside item 1, which starts on line 2: it was cut short."),
        (_js_doc(OK)[:-2], "The file ends after item 1 without the closing ] (line 8): it was cut short."),
        (_js_doc(OK, end=",\n"), "The file ends where item 2 should start (line 9): it was cut short."),
        (_js_doc(OK, end="\n  x"), "Unexpected 'x' after item 1 (line 9): expected , or ]."),
        (_js_doc(OK, end="\n];\nalert(1)"), "Unexpected text after the closing ] (line 10)."),
        (_js_doc(OK, end=",\n]"), "Item 2 (line 9) is not a JSON object: it starts with ']'."),
        (
            _js_doc(OK, _tweet("2", "caf\u00e9")).replace(b"\xc3\xa9", b"\xe9"),
            "The file is not UTF-8 text (line 12).",
        ),
    ],
)
def test_each_problem_of_the_file_is_named(data, message):
    assert _js_error(data).message.startswith(message)


def test_a_valid_file_may_end_with_a_semicolon_and_whitespace():
    data = _js_doc(OK, end="\n] ;\n\n")
    assert [i.external_id for i in _js(io.BytesIO(data))] == ["100"]
    assert [i.external_id for i in _js(io.BytesIO(b"\xef\xbb\xbf" + data))] == ["100"]  # a BOM


def test_an_object_larger_than_the_bound_is_refused_not_buffered():
    endless = b'window.YTD.tweets.part0 = [ {"tweet": {"id_str": "1", "full_text": "' + b"a" * (3 * MiB)
    error = _js_error(endless, max_object_chars=MiB)
    assert error.message.startswith("Item 1 (line 1) runs past 1,048,576 characters without ending")


def test_every_tweet_skipped_leaves_nothing_to_audit():
    data = _js_doc(_tweet("1", "RT @a: x"), _tweet("2", "@b y", in_reply_to_status_id_str="5"))
    error = _js_error(data, skip_retweets=True, skip_replies=True)
    assert error.message == (
        "All 2 tweets are retweets or replies, which were to be left out: nothing is left to audit."
    )


def test_x_dates():
    assert parse_x_date("Wed Oct 10 20:19:24 +0000 2018") == datetime(2018, 10, 10, 20, 19, 24, tzinfo=UTC)
    moment = parse_x_date("Wed Oct 10 22:19:24 +0200 2018")
    assert moment == datetime(2018, 10, 10, 22, 19, 24, tzinfo=timezone(timedelta(hours=2)))
    assert moment.tzinfo == UTC
    for bad in (
        "Wed Oct 10 20:19:24 2018",
        "Wed Okt 10 20:19:24 +0000 2018",
        "Wed Oct 32 20:19:24 +0000 2018",
    ):
        assert parse_x_date(bad) is None


def test_memory_stays_bounded_by_the_largest_item_not_the_file():
    # 10,000 tweets (18 MB) keep the test short under tracemalloc, which slows every
    # allocation; what is held is the window (a chunk and an object) and the set of ids.
    data = x_archive_js(10_000, seed=9)
    stream = io.BytesIO(data)
    tracemalloc.start()
    try:
        count = sum(1 for _item in _js(stream))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 10_000
    assert len(data) > 15 * MiB
    assert peak < 4 * MiB, peak


# --- The archive's zip -----------------------------------------------------------------


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _patch(data: bytes, name: str, *, central: int, local: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of a member's central directory entry and local header: how a
    hostile zip lies about a size or a flag."""
    patched = bytearray(data)
    at = patched.find(b"PK\x01\x02")
    while at >= 0:
        name_length, extra, comment = struct.unpack_from("<HHH", patched, at + 28)
        if patched[at + 46 : at + 46 + name_length] == name.encode():
            (header_at,) = struct.unpack_from("<I", patched, at + 42)
            struct.pack_into(fmt, patched, at + central, value)
            struct.pack_into(fmt, patched, header_at + local, value)
            return bytes(patched)
        at = patched.find(b"PK\x01\x02", at + 46 + name_length + extra + comment)
    raise AssertionError(name)


def _zip_items(data: bytes, **options):
    options = {
        "max_items": MAX_ITEMS,
        "max_item_chars": MAX_CHARS,
        "max_uncompressed_bytes": 50 * MiB,
    } | options
    return parse_x_archive_zip(io.BytesIO(data), **options)


def test_an_archive_zip_in_parts_reads_every_part_in_order_and_nothing_else():
    samples = list(sample_tweets(900, seed=4))
    data = x_archive_zip(900, seed=4, parts=3, folder="twitter-2024-06-01-abc/")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "twitter-2024-06-01-abc/data/tweets-part2.js" in names
    assert "twitter-2024-06-01-abc/data/deleted-tweets.js" in names  # the same ids: never opened
    result = _zip_items(data, skip_replies=True)
    assert _got(result) == _expected([s for s in samples if not s.is_reply])
    assert result.skipped_replies == sum(s.is_reply for s in samples)


def test_parts_are_read_in_part_order_whatever_their_order_in_the_zip():
    data = _zip(
        {
            "data/tweets-part2.js": _js_doc(_tweet("3", "c"), prefix="window.YTD.tweets.part2 = "),
            "data/tweets.js": _js_doc(_tweet("1", "a")),
            "data/tweets-part1.js": _js_doc(_tweet("2", "b"), prefix="window.YTD.tweets.part1 = "),
        }
    )
    assert [i.text for i in _zip_items(data)] == ["a", "b", "c"]


def test_an_older_archive_with_data_tweet_js_is_read():
    old = _js_doc({"id_str": "5", "full_text": "from 2019"}, prefix="window.YTD.tweet.part0 = ")
    assert [i.text for i in _zip_items(_zip({"twitter-2019/data/tweet.js": old}))] == ["from 2019"]


def test_an_error_in_a_later_part_names_the_item_across_parts_and_the_part():
    data = _zip(
        {
            "data/tweets.js": _js_doc(_tweet("1"), _tweet("2")),
            "data/tweets-part1.js": _js_doc(_tweet("3"), _tweet("1")),
        }
    )
    with pytest.raises(InputError) as caught:
        list(_zip_items(data))
    assert (
        caught.value.message
        == "Item 4 (id 1, line 9 of data/tweets-part1.js) repeats the id of an earlier item."
    )
    assert caught.value.details == {"item": 4, "item_id": "1", "line": 9, "file": "data/tweets-part1.js"}


def test_the_limit_is_shared_by_every_part():
    data = x_archive_zip(60, seed=1, parts=2)
    with pytest.raises(TooManyItems) as caught:
        list(_zip_items(data, max_items=45))
    assert (caught.value.count, caught.value.limit) == (46, 45)


def test_a_member_declaring_more_than_the_bound_is_refused_before_it_is_read():
    bomb = b"window.YTD.tweets.part0 = [" + b" " * (8 * MiB) + b"]"
    data = _zip({"data/tweets.js": bomb})
    assert len(data) < 20_000
    with pytest.raises(InputError) as caught:
        _zip_items(data, max_uncompressed_bytes=MiB)  # refused when called, before any read
    assert caught.value.message == (
        "data/tweets.js expands to 8,388,636 bytes; the tweets of an archive may take at most "
        "1,048,576 bytes in all."
    )


def test_a_member_lying_about_its_size_is_refused_without_expanding_it():
    bomb = b"window.YTD.tweets.part0 = [" + b" " * (32 * MiB) + b"]"
    data = _zip({"data/tweets.js": bomb})
    data = _patch(data, "data/tweets.js", central=24, local=22, fmt="<I", value=4096)
    with pytest.raises(InputError) as caught:
        list(_zip_items(data, max_uncompressed_bytes=MiB))
    # The CRC check fails at the 4 KiB it declared: nothing past them was expanded.
    assert caught.value.message.startswith("The zip is damaged: data/tweets.js cannot be read (Bad CRC-32")


def test_the_bytes_a_member_expands_to_are_counted_whatever_it_declared():
    reader = _MemberReader(io.BytesIO(b"x" * 5000), name="data/tweets.js", limit=4096, total_limit=4096)
    assert len(reader(4096)) == 4096
    with pytest.raises(InputError) as caught:
        reader(4096)
    assert caught.value.message == (
        "data/tweets.js expands to more than its share of 4,096 bytes, the most the tweets of an "
        "archive may take."
    )


def test_the_bound_covers_the_parts_together():
    part = _js_doc(*(_tweet(str(i), "t" * 100) for i in range(1, 40)))
    data = _zip({"data/tweets.js": part, "data/tweets-part1.js": part})
    with pytest.raises(InputError, match=r"data/tweets-part1.js expands to [0-9,]+ bytes"):
        _zip_items(data, max_uncompressed_bytes=len(part) + 100)


def test_an_encrypted_member_is_refused():
    data = _patch(
        _zip({"data/tweets.js": _js_doc(OK)}), "data/tweets.js", central=8, local=6, fmt="<H", value=1
    )
    with pytest.raises(InputError, match=r"^data/tweets.js is encrypted: make the zip without a password\.$"):
        _zip_items(data)


def test_a_member_compressed_with_bzip2_is_refused():
    data = _zip({"data/tweets.js": _js_doc(OK)}, compression=zipfile.ZIP_BZIP2)
    with pytest.raises(InputError, match=r"^data/tweets.js is compressed with bzip2, which is not accepted"):
        _zip_items(data)


def test_a_zip_without_tweets_names_what_was_expected():
    data = _zip({"data/account.js": b"window.YTD.account.part0 = []", "data/deleted-tweets.js": _js_doc(OK)})
    with pytest.raises(InputError) as caught:
        _zip_items(data)
    assert caught.value.message.startswith(
        "The zip holds no data/tweets.js (nor data/tweets-part1.js, ...): it is not an X archive"
    )


def test_two_archives_in_one_zip_are_refused():
    data = _zip({"a/data/tweets.js": _js_doc(OK), "b/data/tweets.js": _js_doc(OK)})
    with pytest.raises(
        InputError, match=r"two tweets files for part 0: a/data/tweets\.js and b/data/tweets\.js"
    ):
        _zip_items(data)


def test_a_damaged_zip_is_refused():
    with pytest.raises(InputError, match=r"^The file is not a readable zip archive"):
        _zip_items(b"PK\x03\x04" + b"\x00" * 100)


def test_a_zip_listing_too_many_files_is_refused_before_zipfile_reads_its_directory():
    data = _zip({f"data/tweets_media/{i}.jpg": b"" for i in range(60)} | {"data/tweets.js": _js_doc(OK)})
    with pytest.raises(InputError, match=r"^The zip lists 61 files in a directory of [0-9,]+ bytes"):
        _zip_items(data, max_entries=50)
    with pytest.raises(InputError, match=r"^The zip lists 61 files"):
        _zip_items(data, max_directory_bytes=1000)
    assert [i.external_id for i in _zip_items(data, max_entries=61)] == ["100"]


# --- CSV --------------------------------------------------------------------------------


def _csv(data: bytes, **options):
    options = {"max_items": MAX_ITEMS, "max_item_chars": MAX_CHARS} | options
    return parse_csv(io.BytesIO(data), **options)


CSV_DOC = (
    "\ufeffNotes,ID, Text ,created_at,URL\r\n"
    'a,1,"Hello, ""world"" 😀\r\nsecond line",2024-06-01T10:00:00Z,https://example.test/1\r\n'
    "b,x-2,=SUM(A1:A2),2024-06-01,\r\n"
    ",,,,\r\n"
    "\r\n"
    "c,3,naïve café 東京,2024-06-01T12:00:00+02:00,http://example.test/3\r\n"
    "d,4,no date\r\n"
).encode()


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64 * 1024])
def test_a_csv_reads_its_rows_with_any_chunk_size(chunk_bytes):
    result = _csv(CSV_DOC, chunk_bytes=chunk_bytes)
    items = [(i.external_id, i.text, i.url, i.created_at, i.truncated) for i in result]
    assert items == [
        (
            "1",
            'Hello, "world" 😀\r\nsecond line',
            "https://example.test/1",
            datetime(2024, 6, 1, 10, tzinfo=UTC),
            False,
        ),
        ("x-2", "=SUM(A1:A2)", "", datetime(2024, 6, 1, tzinfo=UTC), False),
        ("3", "naïve café 東京", "http://example.test/3", datetime(2024, 6, 1, 10, tzinfo=UTC), False),
        ("4", "no date", "", None, False),
    ]
    assert (result.count, result.input_kind) == (4, "csv")


def test_a_csv_text_longer_than_the_limit_is_cut():
    items = list(_csv(b"id,text\n1," + b"y" * 30 + b"\n", max_item_chars=10))
    assert [(i.text, i.truncated) for i in items] == [("y" * 10, True)]


@pytest.mark.parametrize(
    ("data", "message", "line"),
    [
        (b"", "The file is empty.", None),
        (b"\n\n", "The CSV has no header row (line 1).", 1),
        (b"id,body\n1,x\n", "The CSV header row has no text column (line 1)", 1),
        (b"key,body\n1,x\n", "The CSV header row has no id and no text column (line 1)", 1),
        (b"id,text,ID\n1,x,2\n", "The CSV header row repeats the column name 'id' (line 1).", 1),
        (b"id,text\n", "The CSV has a header row and no items.", 1),
        (b"id,text\n1,ok\n2,caf\xe9\n", "The file is not UTF-8 text (line 3).", 3),
        (b'id,text\n1,ok\n2,"a"b\n', "The CSV cannot be parsed (line 3): ',' expected after '\"'.", 3),
        (
            b'id,text\n1,ok\n2,"open\nstill open\n',
            "The CSV cannot be parsed (line 4): unexpected end of data.",
            4,
        ),
        (b"id,text\n1,ok\n ,x\n", "The id is empty (line 3).", 3),
        (b"id,text\n1,ok\n2, \n", "The text is empty (line 3).", 3),
        (b"id,text\n1,ok\n2\n", "The text is empty (line 3).", 3),
        (b"id,text\n1,ok\n2,b\n1,c\n", "The id '1' repeats the id of line 2 (line 4).", 4),
        (b"id,text\n" + b"9" * 256 + b",x\n", "The id is longer than 255 characters (line 2).", 2),
        (
            b"id,text,created_at\n1,ok,yesterday\n",
            "The created_at 'yesterday' is not an ISO 8601 date (line 2).",
            2,
        ),
        (
            b"id,text,url\n1,ok,javascript:alert(1)\n",
            "The url 'javascript:alert(1)' is not an http(s) address of at most 2048 characters (line 2).",
            2,
        ),
    ],
)
def test_each_problem_of_a_csv_names_its_line(data, message, line):
    with pytest.raises(InputError) as caught:
        list(_csv(data))
    assert caught.value.message.startswith(message)
    assert caught.value.line == line
    assert caught.value.details == ({"line": line} if line else {})


def test_a_line_longer_than_the_bound_is_refused_not_buffered():
    with pytest.raises(InputError, match=r"^Line 2 is longer than 1,048,576 characters\.$"):
        list(_csv(b"id,text\n1," + b"z" * (2 * MiB)))


def test_more_csv_rows_than_the_limit_is_too_many_items():
    data = b"id,text\n" + b"".join(b"%d,t\n" % i for i in range(12))
    assert len(list(_csv(data, max_items=12))) == 12
    with pytest.raises(TooManyItems) as caught:
        list(_csv(data, max_items=11))
    assert (caught.value.count, caught.value.limit) == (12, 11)


def test_a_damaged_file_of_any_kind_is_an_input_error_never_a_crash():
    # Bytes flipped, cut, dropped or inserted anywhere in a tweets.js, a zip and a CSV, read
    # with chunk sizes that split everything: whatever breaks is an InputError.
    rng = random.Random(20)
    bases = [x_archive_js(3, seed=3), x_archive_zip(3, seed=3, parts=2), CSV_DOC]
    debris = [b"{", b"}", b"[", b"]", b",", b'"', b"\\", b"\xff", b"\n", b"null", b"\xf0\x9f", b"\\ud800"]
    for _ in range(600):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data) or 1)
            roll = rng.random()
            if roll < 0.4:
                data[at : at + 1] = bytes([rng.randrange(256)])
            elif roll < 0.6:
                del data[at : at + rng.randint(1, 50)]
            elif roll < 0.8:
                data[at:at] = rng.choice(debris)
            else:
                del data[at:]
        try:
            for _item in parse_file(
                io.BytesIO(bytes(data)), max_items=100, max_item_chars=50, max_uncompressed_bytes=MiB
            ):
                pass
        except InputError:
            pass
        data = bytes(data)
        if detect_kind(data) == KIND_TWEETS_JS:
            with contextlib.suppress(InputError):
                list(_js(io.BytesIO(data), chunk_bytes=rng.choice([1, 7, 64])))
        elif detect_kind(data) == KIND_CSV:
            with contextlib.suppress(InputError):
                list(_csv(data, chunk_bytes=rng.choice([1, 7, 64])))


# --- Any upload -------------------------------------------------------------------------


def test_the_kind_of_an_upload_comes_from_its_bytes_not_its_name():
    assert detect_kind(x_archive_zip(2)) == KIND_ZIP
    assert detect_kind(x_archive_js(2)[:512]) == KIND_TWEETS_JS
    assert detect_kind(b"\xef\xbb\xbf \n window.YTD.tweet.part0 = [") == KIND_TWEETS_JS
    assert detect_kind(b'[ {"tweet": {}} ]') == KIND_TWEETS_JS
    assert detect_kind(b"id,text\n1,x\n") == KIND_CSV
    assert detect_kind(b"\xef\xbb\xbfid,text\n") == KIND_CSV


@pytest.mark.parametrize(
    ("data", "kind", "ids"),
    [
        (x_archive_zip(5, seed=8), "x_archive", [s.id_str for s in sample_tweets(5, seed=8)]),
        (x_archive_js(5, seed=8), "x_archive", [s.id_str for s in sample_tweets(5, seed=8)]),
        (b"id,text\na,x\nb,y\n", "csv", ["a", "b"]),
    ],
)
def test_parse_file_reads_any_accepted_upload(data, kind, ids):
    result = parse_file(
        io.BytesIO(data), max_items=MAX_ITEMS, max_item_chars=MAX_CHARS, max_uncompressed_bytes=50 * MiB
    )
    assert result.input_kind == kind
    assert [i.external_id for i in result] == ids


def test_an_empty_upload_is_refused():
    with pytest.raises(InputError, match=r"^The file is empty\.$"):
        parse_file(io.BytesIO(b""), max_items=10, max_item_chars=10, max_uncompressed_bytes=MiB)
