"""An organisation's audit log as CSV, streamed in chunks, every cell spreadsheet-safe."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from nexus.csvstream import line_writer, safe_cell

HEADER = (
    "created_at", "actor_kind", "actor", "action", "target_type", "target_id", "target",
    "changes", "ip", "user_agent", "request_id",
)  # fmt: skip
READ_CHUNK = 2000


def audit_log_csv(events: QuerySet, *, limit: int) -> Iterator[str]:
    writer = line_writer()
    yield writer.writerow(HEADER)
    for event in events[:limit].iterator(chunk_size=READ_CHUNK):
        row = [
            event.created_at.isoformat(),
            event.actor_kind,
            event.actor_label,
            event.action,
            event.target_type,
            event.target_id,
            event.target_label,
            json.dumps(event.changes, sort_keys=True, default=str) if event.changes else "",
            event.ip or "",
            event.user_agent,
            event.request_id,
        ]
        yield writer.writerow([safe_cell(str(cell)) for cell in row])


def audit_log_download(events: QuerySet, *, name: str) -> StreamingHttpResponse:
    """The events as a CSV attachment (`audit-log-<name>.csv`), at most
    AUDIT_LOG_EXPORT_MAX_ROWS of them, written as the response streams."""
    response = StreamingHttpResponse(
        audit_log_csv(events, limit=settings.AUDIT_LOG_EXPORT_MAX_ROWS),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="audit-log-{name}.csv"'
    return response
