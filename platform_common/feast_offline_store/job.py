"""The RetrievalJob of the ASOF join: one DuckDB query, run when asked for, into Arrow, pandas or a parquet file.

Row order. Feast promises none, and `to_arrow` / `to_df` keep none (sorting a million wide rows costs more
than the join of a view). `persist` writes the rows sorted by the entity event timestamp (nulls last), then by
their position in the entity rows (the frame's order, or the order in which the entity query returns them:
give it an ORDER BY if that is not fixed): the same entity rows give the same file, byte for byte, and a reader
streams it in time order. (Sorting on every entity column instead cost 1.1 CPU s more at a million labels.)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.infra.offline_stores.file_source import FileSource, SavedDatasetFileStorage
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.saved_dataset import SavedDatasetStorage

from platform_common.feast_offline_store.sql import string_literal


class AsofRetrievalJob(RetrievalJob):
    def __init__(
        self,
        connection: Any,
        query: str,
        persist_order: str,
        full_feature_names: bool,
        on_demand_feature_views: list[OnDemandFeatureView],
        metadata: Callable[[], RetrievalMetadata],
        repo_path: str | None,
        keep_alive: object = None,
    ) -> None:
        super().__init__()
        self._connection = connection  # holds the registered entity frame; one job, one connection
        self._query = query
        self._persist_order = persist_order  # an ORDER BY clause: entity event time, then input order
        self._ordered = False  # to_arrow in persist's order (only while persist runs Feast's on-demand views)
        self._full_feature_names = full_feature_names
        self._on_demand_feature_views = on_demand_feature_views
        self._metadata_of = metadata
        self._metadata: RetrievalMetadata | None = None
        self._repo_path = repo_path
        self._keep_alive = keep_alive  # DuckDB scans a registered pandas frame in place: it must outlive the job

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._on_demand_feature_views

    @property
    def metadata(self) -> RetrievalMetadata | None:
        # Computed on first use: Feast reads it only to save a dataset, and it scans the entity rows once more.
        if self._metadata is None:
            self._metadata = self._metadata_of()
        return self._metadata

    def to_sql(self) -> str:
        """The DuckDB query (it reads the entity rows from a relation registered on this job's connection)."""
        return self._query

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        # The job's own connection, not a cursor: a cursor sees neither the registered entity frame nor the
        # connection's settings (time zone, memory limit).
        query = f"{self._query}{self._persist_order}" if self._ordered else self._query
        return self._connection.sql(query).to_arrow_table()

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._to_arrow_internal(timeout).to_pandas()

    def persist(self, storage: SavedDatasetStorage, allow_overwrite: bool = False, timeout: int | None = None) -> None:
        """Write the result to a parquet file. Without on-demand views the query streams straight into the file
        with DuckDB's `COPY ... TO` (rows never pass through Python, and DuckDB spills its sort to disk past
        its memory limit); with them, Feast's Python transformations need the Arrow table first. The file is
        written next to its destination and renamed into place, so a failed run never leaves half a file."""
        if not isinstance(storage, SavedDatasetFileStorage):
            raise ValueError(f"this offline store persists to SavedDatasetFileStorage only, not {type(storage)}")
        path = Path(FileSource.get_uri_for_file_path(self._repo_path, storage.file_options.uri))
        if "://" in str(storage.file_options.uri):
            raise ValueError(f"this offline store persists to local files only, not {storage.file_options.uri}")
        if path.exists() and not allow_overwrite:
            raise SavedDatasetLocationAlreadyExists(location=str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            if self.on_demand_feature_views:
                # Feast's on-demand transformations run in Python on the Arrow table, row by row in its order.
                self._ordered = True
                try:
                    pq.write_table(self.to_arrow(timeout=timeout), partial)
                finally:
                    self._ordered = False
            else:
                ordered = f"{self._query}{self._persist_order}"
                self._connection.execute(f"copy ({ordered}) to {string_literal(str(partial))} (format parquet)")
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
