"""An audit's results as CSV, written row by row as the response streams (the items are
read from the database in chunks, never all at once).

X archives: `tweet_url,deleted,reason,categories,confidence`, one row per flagged item, with
`deleted` left empty for the deletion tool to fill; other inputs:
`id,url,text,reason,categories,confidence`. With `everything`, every evaluated item and a last
`flagged` column. The rule it keeps: no cell starts with what a spreadsheet takes for a
formula (= + - @ tab, carriage return): such a cell is prefixed with a single quote.
"""

from __future__ import annotations

from collections.abc import Iterator

from django_tenants.utils import tenant_context

from audits.models import Audit, AuditItem, InputKind, ItemStatus
from nexus.csvstream import line_writer, safe_cell

READ_CHUNK = 2000
X_HEADER = ("tweet_url", "deleted", "reason", "categories", "confidence")
OTHER_HEADER = ("id", "url", "text", "reason", "categories", "confidence")


def file_name(audit: Audit) -> str:
    return f"audit-{audit.pk}-results.csv"


def header(audit: Audit, *, everything: bool) -> tuple[str, ...]:
    columns = X_HEADER if audit.input_kind == InputKind.X_ARCHIVE else OTHER_HEADER
    return (*columns, "flagged") if everything else columns


def _confidence(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _row(audit: Audit, item: AuditItem, *, everything: bool) -> list[str]:
    categories = ";".join(item.categories or ())
    if audit.input_kind == InputKind.X_ARCHIVE:
        row = [item.url, "", item.reason, categories, _confidence(item.confidence)]
    else:
        row = [item.external_id, item.url, item.text, item.reason, categories, _confidence(item.confidence)]
    if everything:
        row.append("true" if item.flagged else "false")
    return [safe_cell(cell) for cell in row]


def result_items(audit: Audit, *, everything: bool):
    """The items the CSV holds, in input order: the flagged ones, or every evaluated one."""
    items = AuditItem.objects.filter(audit_id=audit.pk, status=ItemStatus.EVALUATED)
    if not everything:
        items = items.filter(flagged=True)
    return items.order_by("seq").only(
        "seq", "external_id", "url", "text", "reason", "categories", "confidence", "flagged"
    )


def results_csv(organisation, audit: Audit, *, everything: bool) -> Iterator[str]:
    """The CSV's lines. Iterated by the server after the view has returned (and the request
    has left the organisation's schema), so it reads inside the organisation's own."""
    writer = line_writer()
    yield writer.writerow(header(audit, everything=everything))
    with tenant_context(organisation):
        for item in result_items(audit, everything=everything).iterator(chunk_size=READ_CHUNK):
            yield writer.writerow(_row(audit, item, everything=everything))
