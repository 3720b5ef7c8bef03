"""Preparing batches of a run in a second thread.

Fetching, hashing and normalising are Python work; writing is database work, during which
the writing thread waits on the socket. So a producer thread prepares batch N+1 while the
run's own thread writes batch N. The producer never touches the database (the connection is
the writer's); it hands over plain tuples, ready for COPY.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from etl.bulk import pg_text_array
from etl.drift import Drift, RunDrift
from etl.normalise import ItemRejected, canonical_json, clean_text, content_hash, normalise, without_nul
from nexus.pgcopy import copy_field, copy_text


@dataclass
class PreparedBatch:
    size: int
    cursor: dict
    incoming: set[str]
    fetched_at: datetime
    raw_lines: dict[str, str] = field(default_factory=dict)  # content hash -> COPY line (RAW_COLUMNS)
    # external_id -> (digest, COPY line of bulk.RECORD_COLUMNS or None, rejection reason, payload)
    latest: dict[str, tuple] = field(default_factory=dict)
    rejected_without_id: list[tuple[dict, str, str]] = field(default_factory=list)  # payload, reason, hash
    duplicates: int = 0
    drift: list[Drift] = field(default_factory=list)  # first found in this batch


@dataclass(frozen=True)
class _LineParts:
    """What every COPY line of one batch shares, formatted once per batch: this runs for
    every item, and formatting the same ids and time per field was a third of the work."""

    source: str
    run: str
    now: str

    @classmethod
    def of(cls, source_id, run_id, now: datetime) -> _LineParts:
        return cls(copy_field(source_id), copy_field(run_id), copy_field(now))

    def raw(self, external_id: str, digest: str, canonical: str) -> str:
        # Columns of bulk.RAW_COLUMNS; the digest is hex and needs no escaping.
        escaped_id, escaped_payload = copy_text(external_id), copy_text(canonical)
        return f"{self.source}\t{self.run}\t{escaped_id}\t{digest}\t{escaped_payload}\t{self.now}\n"

    def record(self, external_id: str, digest: str, clean) -> str:
        # Columns of bulk.RECORD_COLUMNS.
        published = clean.published_at.isoformat() if clean.published_at else "\\N"
        return (
            "\t".join(
                (
                    self.source,
                    copy_text(external_id),
                    copy_text(clean.title or ""),
                    copy_text(clean.body or ""),
                    copy_text(clean.url or ""),
                    copy_text(clean.author or ""),
                    published,
                    copy_text(pg_text_array(clean.tags)),
                    copy_text(json.dumps(clean.extra, default=str)),
                    digest,
                    self.run,
                    self.run,
                    self.now,
                    self.now,
                )
            )
            + "\n"
        )


def prepare(
    items: Iterator[tuple[dict, dict]],
    *,
    source_id,
    run_id,
    mapping: dict,
    required: list[str],
    known_fields: set[str],
    threshold: float,
    batch_size: int,
    fail_after: int | None,
    reported_drift: set[tuple[str, str, str]] | None = None,
) -> Iterator[PreparedBatch]:
    drift = RunDrift(
        mapping=mapping, required=required, threshold=threshold, known=known_fields, reported=reported_drift
    )
    processed = 0
    pending: list[tuple[dict, dict]] = []

    def build(chunk: list[tuple[dict, dict]]) -> PreparedBatch:
        batch = PreparedBatch(size=len(chunk), cursor=chunk[-1][1], incoming=set(), fetched_at=timezone.now())
        # Every batch is checked against the mapping, item shape by item shape: a field
        # renamed or added part-way through a run is matched and reported where it appears.
        plans: dict[frozenset[str], dict[str, str]] = {}
        lines = _LineParts.of(source_id, run_id, batch.fetched_at)
        for payload, _cursor in chunk:
            canonical = canonical_json(payload)
            if "\\u0000" in canonical:
                payload = without_nul(payload)
                canonical = canonical_json(payload)
            shape = frozenset(payload)
            effective = plans.get(shape)
            if effective is None:
                effective = plans[shape] = drift.effective(shape)
            id_field = effective.get("external_id")
            external_id = clean_text(payload.get(id_field))
            digest = content_hash(payload, canonical)
            if external_id is None:
                batch.rejected_without_id.append(
                    (payload, f"missing required field 'external_id' (mapped from {id_field!r})", digest)
                )
                continue
            external_id = external_id[:255]
            batch.raw_lines[digest] = lines.raw(external_id, digest, canonical)
            batch.duplicates += external_id in batch.latest
            try:
                clean = normalise(payload, effective, required)
            except ItemRejected as exc:
                line, reason = None, str(exc)
            else:
                line, reason = lines.record(external_id, digest, clean), None
            batch.latest[external_id] = (digest, line, reason, payload)
        batch.incoming = set().union(*plans)
        batch.drift = drift.batch_events(plans)
        return batch

    for item in items:
        pending.append(item)
        limit = batch_size if fail_after is None else min(batch_size, fail_after - processed)
        if len(pending) >= limit:
            yield build(pending)
            processed += len(pending)
            pending = []
    if pending:
        yield build(pending)


_DONE = object()


def in_background(
    batches: Iterator[PreparedBatch], *, depth: int = 2, stop: threading.Event | None = None
) -> Iterator[PreparedBatch]:
    """Run `batches` in a producer thread, `depth` batches ahead of the consumer. An error
    in the producer is raised in the consumer; closing the consumer stops the producer.
    Pass the `stop` event the item stream also watches, so that a consumer leaving early
    (an error, a time limit) stops the producer at its next item, not at its next batch."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = stop or threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        handoff.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            handoff.put(exc)

    producer = threading.Thread(target=produce, name="etl-prepare", daemon=True)
    producer.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while producer.is_alive():
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.1)
        producer.join(timeout=5)
