"""CSV files (local or https). The cursor is the file's checksum and the next row: an
unchanged, fully read file is skipped at once; a run stopped mid-file resumes at its row;
a changed file is read again (unchanged rows are recognised by their content hash)."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator

from etl.config import CsvSourceConfig
from etl.connectors.base import Connector
from etl.http import FetchError


class CsvConnector(Connector):
    config: CsvSourceConfig

    def items(self, cursor: dict) -> Iterator[tuple[dict, dict]]:
        config = self.config
        data = self.read_bytes(path=config.path, url=config.url)
        checksum = hashlib.sha256(data).hexdigest()
        same_file = cursor.get("checksum") == checksum
        if same_file and cursor.get("complete"):
            self.final_cursor = dict(cursor)
            return
        start = cursor.get("row", 0) if same_file else 0
        try:
            text = data.decode(config.encoding or "utf-8-sig")
        except (UnicodeDecodeError, LookupError) as exc:
            raise FetchError(f"The file is not valid {config.encoding or 'utf-8'} text.") from exc
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=config.delimiter)
        row = 0
        for row, values in enumerate(reader, start=1):
            if row <= start:
                continue
            payload = {(key or "").strip(): value for key, value in values.items() if key is not None}
            if None in values:  # more cells than headers: kept, not lost
                payload["_extra_cells"] = values[None]
            yield payload, {"checksum": checksum, "row": row}
        self.final_cursor = {"checksum": checksum, "row": max(row, start), "complete": True}
