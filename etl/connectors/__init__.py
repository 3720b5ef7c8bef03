"""Connectors turn a source into a stream of (raw item, cursor after that item). The
runner batches them; a batch's last cursor is the checkpoint committed with it."""

from __future__ import annotations

from etl.connectors.api import ApiConnector
from etl.connectors.base import Connector, local_file
from etl.connectors.csv_file import CsvConnector
from etl.connectors.rss import RssConnector
from etl.models import DataSource, SourceKind

__all__ = ["Connector", "connector_for", "local_file"]


def connector_for(source: DataSource) -> Connector:
    return {SourceKind.API: ApiConnector, SourceKind.CSV: CsvConnector, SourceKind.RSS: RssConnector}[
        source.kind
    ](source)
