"""What an audit evaluates, read from the uploaded file: an X archive's tweets (`tweets.js`
alone or inside the archive's zip) or a CSV, one item at a time. Pure Python: the limits
come in as arguments and every problem goes out as an `InputError`.

The rule it keeps: memory is bounded by the largest item, never by the file. Nothing is
read past its bound (items, characters of one item, bytes a zip member expands to), and
what cannot be read exactly is refused with the item or line at fault, never guessed at
or skipped.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import IO, Any

CHUNK_BYTES = 64 * 1024
# A tweet object is a few KB (a long post of 25,000 characters stays well under 200 KB):
# text that runs past this without closing an object is not a tweet, and is not buffered.
MAX_OBJECT_CHARS = 1024 * 1024
MAX_LINE_CHARS = 1024 * 1024  # one physical line of a CSV
MAX_ID_CHARS = 255
MAX_URL_CHARS = 2048
# zipfile turns the whole central directory into objects (~500 bytes an entry) before a
# member is opened: its size is read from the end record and bounded first. An X archive
# small enough to upload has a few thousand entries, about 150 bytes each.
MAX_ZIP_ENTRIES = 50_000
MAX_ZIP_DIRECTORY_BYTES = 4 * 1024 * 1024
HEAD_BYTES = 512  # what detect_kind looks at

KIND_ZIP = "zip"
KIND_TWEETS_JS = "tweets_js"
KIND_CSV = "csv"

X_STATUS_URL = "https://x.com/i/web/status/{}"
X_DATE_EXAMPLE = "Wed Oct 10 20:19:24 +0000 2018"
CSV_COLUMNS = ("id", "text", "created_at", "url")

_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_ARRAY_START = re.compile(r"[ \t\n\r]*(?:window\.YTD\.\w+\.part[0-9]+[ \t]*=[ \t\n\r]*)?\[", re.ASCII)
_TWEETS_MEMBER = re.compile(r"(?:.*/)?data/tweets?(?:-part([0-9]+))?\.js", re.ASCII)
_DIGITS = re.compile(r"[0-9]{1,20}", re.ASCII)
_WEB_ADDRESS = re.compile(r"https?://[^\x00-\x20\x7f/?#]+(?:[/?#][^\x00-\x20\x7f]*)?", re.IGNORECASE)
_SURROGATE = re.compile("[\ud800-\udfff]")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}
_X_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([0-9]{2}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2}) ([0-9]{4})",
    re.ASCII,
)
# How far before the end of the window a JSON error can sit when the only fault is that the
# object goes on in the next chunk (a cut literal such as `-Infinit`, a cut `\uXXXX`);
# a cut string is reported at its start, wherever that is.
_CUT_MARGIN = 16
_SAFE_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
# What zipfile raises on a damaged or hostile zip (a version it does not know, an offset
# before the start of the file, a cut deflate stream ...): all of it means "damaged".
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, OSError)
_COMPRESSION_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma", 9: "deflate64"}


class InputError(Exception):
    """The file cannot be read as items. `code` is the API's error code; `details` is what
    the error envelope carries: `line` (CSV, tweets.js), `item` and `item_id` (an archive's
    item number, 1-based, and its id_str when known), `file` (the member of a zip)."""

    code = "INVALID_FILE"

    def __init__(
        self,
        message: str,
        *,
        item: int | None = None,
        item_id: str | None = None,
        line: int | None = None,
        file: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.item = item
        self.item_id = item_id
        self.line = line
        self.file = file

    @property
    def details(self) -> dict[str, Any]:
        found = {"item": self.item, "item_id": self.item_id, "line": self.line, "file": self.file}
        return {name: value for name, value in found.items() if value is not None}


class TooManyItems(InputError):
    """More items than one audit takes (after retweets and replies were left out). `count`
    is how many had been read when the limit was passed; the file may hold more."""

    code = "TOO_MANY_ITEMS"

    def __init__(self, *, count: int, limit: int):
        super().__init__(f"The file holds more than {limit:,} items; one audit takes at most {limit:,}.")
        self.count = count
        self.limit = limit

    @property
    def details(self) -> dict[str, Any]:
        return {"count": self.count, "limit": self.limit}


@dataclass(frozen=True, slots=True)
class InputItem:
    external_id: str
    text: str
    url: str  # "" when the input has none
    created_at: datetime | None = None
    is_retweet: bool = False
    is_reply: bool = False
    truncated: bool = False  # the text was cut at max_item_chars


class ItemStream(Iterator[InputItem]):
    """The items of one input, read as they are iterated. An error in the file is raised
    by the `next()` that reaches it; the counters are final once iteration has ended."""

    def __init__(self, input_kind: str):
        self.input_kind = input_kind  # "x_archive" | "csv"
        self.count = 0
        self.skipped_retweets = 0
        self.skipped_replies = 0
        self._items: Iterator[InputItem] = iter(())

    @property
    def skipped(self) -> int:
        return self.skipped_retweets + self.skipped_replies

    def __iter__(self) -> ItemStream:
        return self

    def __next__(self) -> InputItem:
        return next(self._items)


# --- Helpers shared by every format ----------------------------------------------------


def _clean_text(text: str, limit: int) -> tuple[str, bool]:
    """The text as it can be stored (PostgreSQL takes neither NUL nor a lone surrogate,
    which a JSON escape can produce: both become U+FFFD), cut at `limit` characters."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _SURROGATE.sub("\ufffd", text)
    if len(text) > limit:
        return text[:limit], True
    return text, False


def parse_x_date(value: str) -> datetime | None:
    """X's `Wed Oct 10 20:19:24 +0000 2018` as an aware datetime in UTC; None if it is not
    that format. The weekday is not checked against the date."""
    match = _X_DATE.fullmatch(value)
    if not match:
        return None
    month, day, hour, minute, second, sign, off_h, off_m, year = match.groups()
    offset = timedelta(hours=int(off_h), minutes=int(off_m))
    try:
        moment = datetime(
            int(year),
            _MONTHS[month],
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=timezone(-offset if sign == "-" else offset) if offset else UTC,
        )
    except ValueError:
        return None
    return moment.astimezone(UTC)


def _parse_iso_date(value: str) -> datetime | None:
    """ISO 8601 (a date alone is midnight; no offset is UTC) or X's format; None if neither."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return parse_x_date(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _is_web_address(url: str) -> bool:
    """http(s), a host, no space or control character: an address a page may link to."""
    return len(url) <= MAX_URL_CHARS and _WEB_ADDRESS.fullmatch(url) is not None


def _unescape_x(text: str) -> str:
    # X stores full_text with &, < and > as HTML entities (and nothing else): this is the
    # exact inverse, `&amp;` last so that a written "&lt;" (stored "&amp;lt;") survives.
    if "&" not in text:
        return text
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def detect_kind(head: bytes) -> str:
    """What the first bytes of an upload are, whatever the file is called: a zip (by its
    magic number), X's tweets.js (`window.YTD.` or a bare JSON array), else a CSV."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return KIND_ZIP
    text = head.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n")
    if text.startswith((b"window.YTD.", b"[")):
        return KIND_TWEETS_JS
    return KIND_CSV


def parse_file(
    file: IO[bytes],
    *,
    max_items: int,
    max_item_chars: int,
    max_uncompressed_bytes: int,
    skip_retweets: bool = False,
    skip_replies: bool = False,
) -> ItemStream:
    """The items of an upload of any accepted kind (detect_kind decides). `file` must be
    seekable, as Django's uploaded files are."""
    head = file.read(HEAD_BYTES)
    file.seek(0)
    if not head:
        raise InputError("The file is empty.")
    kind = detect_kind(head)
    if kind == KIND_ZIP:
        return parse_x_archive_zip(
            file,
            max_items=max_items,
            max_item_chars=max_item_chars,
            max_uncompressed_bytes=max_uncompressed_bytes,
            skip_retweets=skip_retweets,
            skip_replies=skip_replies,
        )
    if kind == KIND_TWEETS_JS:
        return parse_x_archive(
            file,
            max_items=max_items,
            max_item_chars=max_item_chars,
            skip_retweets=skip_retweets,
            skip_replies=skip_replies,
        )
    return parse_csv(file, max_items=max_items, max_item_chars=max_item_chars)


# --- X's tweets.js ---------------------------------------------------------------------


def _maybe_cut(exc: json.JSONDecodeError, end: int) -> bool:
    return exc.msg.startswith("Unterminated string") or end - exc.pos <= _CUT_MARGIN


class _TweetsJsElements:
    """The elements of the one JSON array in a tweets.js, decoded one at a time
    (`raw_decode`) from a window of text that holds the current object and one chunk."""

    def __init__(
        self,
        read: Callable[[int], bytes],
        *,
        first_item: int,
        file: str | None,
        chunk_bytes: int,
        max_object_chars: int,
    ):
        self._read = read
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._raw_decode = json.JSONDecoder().raw_decode
        self._next_item = first_item
        self._file = file
        self._chunk_bytes = chunk_bytes
        self._max_object_chars = max_object_chars
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._line = 1  # the line number at _buf[_line_pos]; _line_pos <= _pos
        self._line_pos = 0
        self._byte_newlines = 0  # in the bytes decoded so far: where a decoding error is

    def _error(self, message: str, **where: Any) -> InputError:
        return InputError(message, file=self._file, **where)

    def _of_file(self, line: int) -> str:
        return f"line {line} of {self._file}" if self._file else f"line {line}"

    def _more(self, wanted: int = 1) -> None:
        """Append at least `wanted` characters (fewer at the end of the file), dropping
        the text before the current position."""
        parts: list[str] = []
        got = 0
        while got < wanted and not self._eof:
            data = self._read(self._chunk_bytes)
            try:
                text = self._decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                # exc.object is the decoder's pending bytes (part of one character, so no
                # newline) followed by this chunk.
                line = self._byte_newlines + exc.object[: exc.start].count(b"\n") + 1
                raise self._error(f"The file is not UTF-8 text ({self._of_file(line)}).", line=line) from None
            self._byte_newlines += data.count(b"\n")
            self._eof = not data
            parts.append(text)
            got += len(text)
        self._line += self._buf.count("\n", self._line_pos, self._pos)
        self._buf = self._buf[self._pos :] + "".join(parts)
        self._pos = self._line_pos = 0

    def _line_at(self, pos: int) -> int:
        self._line += self._buf.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line

    def _peek(self) -> str:
        """The next character that is not JSON whitespace, not consumed ('' at the end)."""
        while True:
            self._pos = _JSON_SPACE.match(self._buf, self._pos).end()  # type: ignore[union-attr]
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if self._eof:
                return ""
            self._more()

    def _open_array(self) -> None:
        while True:
            match = _ARRAY_START.match(self._buf)
            if match:
                self._pos = match.end()
                return
            if self._eof or len(self._buf) > HEAD_BYTES:
                raise self._error(
                    "The file does not start as X's tweets.js does (window.YTD.tweets.part0 = [).", line=1
                )
            self._more()

    def __iter__(self) -> Iterator[tuple[Any, int, int]]:
        """(decoded object, item number, line it starts on) for each element, then checks
        that nothing but an optional `;` follows the closing bracket."""
        self._open_array()
        if self._peek() == "]":
            self._pos += 1
        else:
            while True:
                item = self._next_item
                value, line = self._element(item)
                self._next_item += 1
                yield value, item, line
                char = self._peek()
                self._pos += 1
                if char == ",":
                    continue
                if char == "]":
                    break
                line = self._line_at(self._pos - 1)
                if not char:
                    raise self._error(
                        f"The file ends after item {item} without the closing ] "
                        f"({self._of_file(line)}): it was cut short.",
                        item=item,
                        line=line,
                    )
                raise self._error(
                    f"Unexpected {char!r} after item {item} ({self._of_file(line)}): expected , or ].",
                    item=item,
                    line=line,
                )
        char = self._peek()
        if char == ";":
            self._pos += 1
            char = self._peek()
        if char:
            line = self._line_at(self._pos)
            raise self._error(f"Unexpected text after the closing ] ({self._of_file(line)}).", line=line)

    def _element(self, item: int) -> tuple[Any, int]:
        char = self._peek()
        line = self._line_at(self._pos)
        where = f"Item {item} ({self._of_file(line)})"
        if char != "{":
            if not char:
                raise self._error(
                    f"The file ends where item {item} should start ({self._of_file(line)}): "
                    "it was cut short.",
                    item=item,
                    line=line,
                )
            raise self._error(f"{where} is not a JSON object: it starts with {char!r}.", item=item, line=line)
        wanted = 0  # characters the window must hold before the next attempt
        while True:
            held = len(self._buf) - self._pos
            if held >= wanted or self._eof:
                try:
                    value, end = self._raw_decode(self._buf, self._pos)
                except json.JSONDecodeError as exc:
                    if not self._eof and _maybe_cut(exc, len(self._buf)):
                        # Most likely the object goes on in the next chunk. Wait for twice
                        # as much text before trying again, so that an object is decoded a
                        # few times at most whatever the chunk size (log2 of its length).
                        wanted = 2 * held
                    elif self._eof and (
                        exc.msg.startswith("Unterminated string") or exc.pos >= len(self._buf.rstrip())
                    ):
                        raise self._error(
                            f"The file ends inside item {item}, which starts on {self._of_file(line)}: "
                            "it was cut short.",
                            item=item,
                            line=line,
                        ) from None
                    else:
                        at = line + self._buf.count("\n", self._pos, exc.pos)
                        raise self._error(
                            f"{where} is not valid JSON: {exc.msg} on line {at}.", item=item, line=at
                        ) from None
                else:
                    self._pos = end
                    return value, line
            if held > self._max_object_chars:
                raise self._error(
                    f"{where} runs past {self._max_object_chars:,} characters without ending; no "
                    "tweet is that long, so the file is damaged or is not X's tweets.js.",
                    item=item,
                    line=line,
                )
            # Never more than one character past the bound (and the chunk that brings it).
            self._more(max(min(wanted, self._max_object_chars + 1) - held, 1))


class _TweetItems:
    """Turns decoded tweet objects into items for one ItemStream, across every file of an
    archive: one item numbering, one set of ids, one limit, one pair of skip counters."""

    def __init__(
        self,
        stream: ItemStream,
        *,
        max_items: int,
        max_item_chars: int,
        skip_retweets: bool,
        skip_replies: bool,
        chunk_bytes: int,
        max_object_chars: int,
    ):
        self._stream = stream
        self._max_items = max_items
        self._max_item_chars = max_item_chars
        self._skip_retweets = skip_retweets
        self._skip_replies = skip_replies
        self._chunk_bytes = chunk_bytes
        self._max_object_chars = max_object_chars
        self._seen: set[int] = set()  # ints: half the memory of the strings
        self.items_read = 0

    def read(self, read: Callable[[int], bytes], *, file: str | None = None) -> Iterator[InputItem]:
        elements = _TweetsJsElements(
            read,
            first_item=self.items_read + 1,
            file=file,
            chunk_bytes=self._chunk_bytes,
            max_object_chars=self._max_object_chars,
        )
        for value, item, line in elements:
            self.items_read = item
            found = self._item(value, item=item, line=line, file=file)
            if found is not None:
                yield found

    def _item(self, value: Any, *, item: int, line: int, file: str | None) -> InputItem | None:
        stream = self._stream
        where_line = f"line {line} of {file}" if file else f"line {line}"

        def error(problem: str, item_id: str | None = None) -> InputError:
            where = f"id {item_id}, {where_line}" if item_id else where_line
            return InputError(
                f"Item {item} ({where}) {problem}", item=item, item_id=item_id, line=line, file=file
            )

        # X wraps each tweet as {"tweet": {...}}; older archives list the tweets themselves.
        tweet = value.get("tweet", value)
        if not isinstance(tweet, dict):
            raise error("has a tweet that is not a JSON object.")
        id_str = tweet.get("id_str")
        if id_str is None:
            raise error("has no id_str.")
        if not isinstance(id_str, str) or not _DIGITS.fullmatch(id_str):
            raise error(f"has an id_str that is not a string of 1 to 20 digits: {json.dumps(id_str)[:60]}.")
        text = tweet.get("full_text")
        if text is None:
            text = tweet.get("text")
            if text is None:
                raise error("has no full_text.", id_str)
        if not isinstance(text, str):
            raise error("has a full_text that is not a string.", id_str)
        if not text.strip():
            raise error("has an empty full_text.", id_str)
        text, truncated = _clean_text(_unescape_x(text), self._max_item_chars)
        created_at = None
        raw_date = tweet.get("created_at")
        if raw_date is not None:
            created_at = parse_x_date(raw_date) if isinstance(raw_date, str) else None
            if created_at is None:
                raise error(
                    f"has a created_at that is not X's date format (like {X_DATE_EXAMPLE!r}): "
                    f"{json.dumps(raw_date, ensure_ascii=False)[:60]}.",
                    id_str,
                )
        number = int(id_str)
        if number in self._seen:
            raise error("repeats the id of an earlier item.", id_str)
        self._seen.add(number)
        is_retweet = bool(
            "retweeted_status" in tweet or tweet.get("retweeted") is True or text.startswith("RT @")
        )
        is_reply = bool(tweet.get("in_reply_to_status_id_str") or tweet.get("in_reply_to_status_id"))
        if is_retweet and self._skip_retweets:
            stream.skipped_retweets += 1
            return None
        if is_reply and self._skip_replies:
            stream.skipped_replies += 1
            return None
        if stream.count >= self._max_items:
            raise TooManyItems(count=stream.count + 1, limit=self._max_items)
        stream.count += 1
        return InputItem(
            external_id=id_str,
            text=text,
            url=X_STATUS_URL.format(id_str),
            created_at=created_at,
            is_retweet=is_retweet,
            is_reply=is_reply,
            truncated=truncated,
        )

    def finish(self) -> None:
        """After the last file: an archive with no tweets, or none left after the skips,
        is nothing to audit."""
        stream = self._stream
        if not self.items_read:
            raise InputError("The archive holds no tweets.")
        if not stream.count:
            left_out = " or ".join(
                name
                for name, asked in (("retweets", self._skip_retweets), ("replies", self._skip_replies))
                if asked
            )
            raise InputError(
                f"All {self.items_read:,} tweets are {left_out}, which were to be left out: "
                "nothing is left to audit."
            )


def parse_x_archive(
    stream: IO[bytes],
    *,
    max_items: int,
    max_item_chars: int,
    skip_retweets: bool = False,
    skip_replies: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
    max_object_chars: int = MAX_OBJECT_CHARS,
) -> ItemStream:
    """The tweets of X's `data/tweets.js` (`window.YTD.<name>.part<N> = [ {"tweet": {...}},
    ... ]`), read `chunk_bytes` at a time from a binary stream. Retweets and replies asked
    to be left out are counted (`skipped_retweets`, `skipped_replies`), never returned;
    `max_items` counts what is left."""
    result = ItemStream("x_archive")
    tweets = _TweetItems(
        result,
        max_items=max_items,
        max_item_chars=max_item_chars,
        skip_retweets=skip_retweets,
        skip_replies=skip_replies,
        chunk_bytes=chunk_bytes,
        max_object_chars=max_object_chars,
    )

    def items() -> Iterator[InputItem]:
        yield from tweets.read(stream.read)
        tweets.finish()

    result._items = items()
    return result


# --- The archive's zip -----------------------------------------------------------------


def _check_zip_directory(file: IO[bytes], *, max_entries: int, max_directory_bytes: int) -> None:
    """Refuse a zip whose central directory would cost zipfile more than the bounds, from
    its end record (zip64 included) alone. A file without one is left to zipfile to refuse."""
    file.seek(0, io.SEEK_END)
    size = file.tell()
    tail_length = min(size, 22 + 0xFFFF)  # the end record and the longest comment
    file.seek(size - tail_length)
    tail = file.read(tail_length)
    file.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or tail_length - at < 22:
        return
    entries, directory_bytes = struct.unpack_from("<HI", tail, at + 10)
    zip64 = entries == 0xFFFF or directory_bytes == 0xFFFFFFFF
    if zip64 and at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
        (record_at,) = struct.unpack_from("<Q", tail, at - 12)
        file.seek(record_at)
        record = file.read(56)
        file.seek(0)
        if len(record) == 56 and record.startswith(b"PK\x06\x06"):
            entries, directory_bytes = struct.unpack_from("<QQ", record, 32)
    if entries > max_entries or directory_bytes > max_directory_bytes:
        raise InputError(
            f"The zip lists {entries:,} files in a directory of {directory_bytes:,} bytes; an archive "
            f"may list at most {max_entries:,} files in {max_directory_bytes:,} bytes. Upload "
            "data/tweets.js alone, or a zip of the data folder."
        )


def _tweets_members(archive: zipfile.ZipFile, *, max_uncompressed_bytes: int) -> list[zipfile.ZipInfo]:
    parts: dict[int, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        match = _TWEETS_MEMBER.fullmatch(info.filename.replace("\\", "/"))
        if not match or info.is_dir():
            continue
        part = int(match.group(1) or 0)
        if part in parts:
            raise InputError(
                f"The zip holds two tweets files for part {part}: {parts[part].filename} and "
                f"{info.filename}. Upload one archive at a time."
            )
        parts[part] = info
    if not parts:
        raise InputError(
            "The zip holds no data/tweets.js (nor data/tweets-part1.js, ...): it is not an X archive, "
            "or it was made without the tweets. Upload X's archive zip as downloaded, or its "
            "data/tweets.js alone."
        )
    members = [parts[part] for part in sorted(parts)]
    declared = 0
    for info in members:
        if info.flag_bits & 0x1:
            raise InputError(
                f"{info.filename} is encrypted: make the zip without a password.", file=info.filename
            )
        if info.compress_type not in _SAFE_COMPRESSION:
            method = _COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
            # bzip2 and lzma members are expanded by zipfile a whole block at a time, with
            # no bound on what one read produces: only stored and deflated ones are read.
            raise InputError(
                f"{info.filename} is compressed with {method}, which is not accepted: make the zip "
                "again with the usual (deflate) compression.",
                file=info.filename,
            )
        declared += info.file_size
        if info.file_size > max_uncompressed_bytes or declared > max_uncompressed_bytes:
            raise InputError(
                f"{info.filename} expands to {info.file_size:,} bytes; the tweets of an archive may take "
                f"at most {max_uncompressed_bytes:,} bytes in all.",
                file=info.filename,
            )
    return members


class _MemberReader:
    """Reads one zip member, counting what it expands to: past `limit` bytes it stops,
    whatever the member declared. zipfile's own errors become InputErrors."""

    def __init__(self, member: IO[bytes], *, name: str, limit: int, total_limit: int):
        self._member = member
        self._name = name
        self._limit = limit
        self._total_limit = total_limit
        self.expanded = 0

    def __call__(self, size: int) -> bytes:
        try:
            data = self._member.read(size)
        except _ZIP_ERRORS as exc:
            raise InputError(
                f"The zip is damaged: {self._name} cannot be read ({exc}).", file=self._name
            ) from None
        self.expanded += len(data)
        if self.expanded > self._limit:
            raise InputError(
                f"{self._name} expands to more than its share of {self._total_limit:,} bytes, the most "
                "the tweets of an archive may take.",
                file=self._name,
            )
        return data


def parse_x_archive_zip(
    file: IO[bytes],
    *,
    max_items: int,
    max_item_chars: int,
    max_uncompressed_bytes: int,
    skip_retweets: bool = False,
    skip_replies: bool = False,
    max_entries: int = MAX_ZIP_ENTRIES,
    max_directory_bytes: int = MAX_ZIP_DIRECTORY_BYTES,
    chunk_bytes: int = CHUNK_BYTES,
    max_object_chars: int = MAX_OBJECT_CHARS,
) -> ItemStream:
    """The tweets of an X archive's zip: `data/tweets.js`, then `data/tweets-part1.js`, ...
    (under any folder; the older `data/tweet.js` too), streamed member by member through
    the tweets.js reader with one item numbering and one limit. No other member is opened.
    `file` must be seekable (Django spools an upload of this size to disk).

    The zip's structure is checked here (directory size, tweets members, encryption,
    compression, declared sizes); the items are read as the result is iterated, with the
    bytes each member actually expands to counted against `max_uncompressed_bytes`."""
    if not file.seekable():
        raise ValueError("parse_x_archive_zip needs a seekable file.")
    _check_zip_directory(file, max_entries=max_entries, max_directory_bytes=max_directory_bytes)
    try:
        archive = zipfile.ZipFile(file)
    except _ZIP_ERRORS as exc:
        raise InputError(f"The file is not a readable zip archive ({exc}).") from None
    try:
        members = _tweets_members(archive, max_uncompressed_bytes=max_uncompressed_bytes)
    except BaseException:
        archive.close()
        raise
    result = ItemStream("x_archive")
    tweets = _TweetItems(
        result,
        max_items=max_items,
        max_item_chars=max_item_chars,
        skip_retweets=skip_retweets,
        skip_replies=skip_replies,
        chunk_bytes=chunk_bytes,
        max_object_chars=max_object_chars,
    )

    def items() -> Iterator[InputItem]:
        left = max_uncompressed_bytes
        with archive:
            for info in members:
                try:
                    member = archive.open(info)
                except (*_ZIP_ERRORS, RuntimeError) as exc:
                    raise InputError(
                        f"The zip is damaged: {info.filename} cannot be opened ({exc}).", file=info.filename
                    ) from None
                with member:
                    reader = _MemberReader(
                        member, name=info.filename, limit=left, total_limit=max_uncompressed_bytes
                    )
                    yield from tweets.read(reader, file=info.filename)
                left -= reader.expanded
        tweets.finish()

    result._items = items()
    return result


# --- CSV -------------------------------------------------------------------------------


def _utf8_lines(read: Callable[[int], bytes], *, chunk_bytes: int, max_line_chars: int) -> Iterator[str]:
    """The text of a UTF-8 stream (a BOM is fine) as lines split at "\\n" only, each with
    its ending, as the csv module reads them: other line breaks may sit inside a field."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    carry = ""
    newlines = 0
    while True:
        data = read(chunk_bytes)
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            line = newlines + exc.object[: exc.start].count(b"\n") + 1
            raise InputError(f"The file is not UTF-8 text (line {line}).", line=line) from None
        newlines += data.count(b"\n")
        if "\n" in text:
            lines = (carry + text).split("\n")
            carry = lines.pop()
            for line_text in lines:
                yield line_text + "\n"
        else:
            carry += text
        if len(carry) > max_line_chars:
            line = newlines + 1
            raise InputError(f"Line {line} is longer than {max_line_chars:,} characters.", line=line)
        if not data:
            break
    if carry:
        yield carry


def _csv_items(
    read: Callable[[int], bytes],
    stream: ItemStream,
    *,
    max_items: int,
    max_item_chars: int,
    chunk_bytes: int,
) -> Iterator[InputItem]:
    reader = csv.reader(
        _utf8_lines(read, chunk_bytes=chunk_bytes, max_line_chars=MAX_LINE_CHARS), strict=True
    )

    def rows() -> Iterator[tuple[list[str], int]]:
        """Each row with the line it starts on."""
        ended = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = reader.line_num
                raise InputError(f"The CSV cannot be parsed (line {line}): {exc}.", line=line) from None
            yield row, ended + 1
            ended = reader.line_num

    numbered = rows()
    first = next(numbered, None)
    if first is None:
        raise InputError("The file is empty.")
    header, _ = first
    names = [cell.strip().lower() for cell in header]
    if not any(names):
        raise InputError("The CSV has no header row (line 1).", line=1)
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in CSV_COLUMNS:
            if name in columns:
                raise InputError(f"The CSV header row repeats the column name {name!r} (line 1).", line=1)
            columns[name] = index
    missing = [name for name in ("id", "text") if name not in columns]
    if missing:
        raise InputError(
            f"The CSV header row has no {' and no '.join(missing)} column (line 1): it needs id and "
            "text; created_at and url are optional, other columns are ignored.",
            line=1,
        )
    id_at, text_at = columns["id"], columns["text"]
    date_at, url_at = columns.get("created_at"), columns.get("url")
    seen: dict[str, int] = {}

    def cell(row: list[str], index: int | None) -> str:
        return row[index] if index is not None and index < len(row) else ""

    for row, line in numbered:
        if not any(value.strip() for value in row):
            continue  # blank lines and the empty rows spreadsheets leave at the end
        external_id = cell(row, id_at).strip()
        if not external_id:
            raise InputError(f"The id is empty (line {line}).", line=line)
        if len(external_id) > MAX_ID_CHARS:
            raise InputError(f"The id is longer than {MAX_ID_CHARS} characters (line {line}).", line=line)
        if external_id in seen:
            raise InputError(
                f"The id {external_id!r} repeats the id of line {seen[external_id]} (line {line}).", line=line
            )
        seen[external_id] = line
        text = cell(row, text_at)
        if not text.strip():
            raise InputError(f"The text is empty (line {line}).", line=line)
        text, truncated = _clean_text(text, max_item_chars)
        raw_date = cell(row, date_at).strip()
        created_at = None
        if raw_date:
            created_at = _parse_iso_date(raw_date)
            if created_at is None:
                raise InputError(
                    f"The created_at {raw_date[:40]!r} is not an ISO 8601 date (line {line}).", line=line
                )
        url = cell(row, url_at).strip()
        if url and not _is_web_address(url):
            raise InputError(
                f"The url {url[:60]!r} is not an http(s) address of at most {MAX_URL_CHARS} "
                f"characters (line {line}).",
                line=line,
            )
        if stream.count >= max_items:
            raise TooManyItems(count=stream.count + 1, limit=max_items)
        stream.count += 1
        yield InputItem(
            external_id=external_id, text=text, url=url, created_at=created_at, truncated=truncated
        )
    if not stream.count:
        raise InputError("The CSV has a header row and no items.", line=1)


def parse_csv(
    stream: IO[bytes], *, max_items: int, max_item_chars: int, chunk_bytes: int = CHUNK_BYTES
) -> ItemStream:
    """The rows of a UTF-8 CSV (a BOM is fine) whose header names `id` and `text` (and
    optionally `created_at`, ISO 8601, and `url`; any case, other columns ignored). Every
    error names the line; ids must be unique; empty rows are passed over. A field may hold
    at most the csv module's field_size_limit() characters (131,072 unless changed)."""
    result = ItemStream("csv")
    result._items = _csv_items(
        stream.read, result, max_items=max_items, max_item_chars=max_item_chars, chunk_bytes=chunk_bytes
    )
    return result
