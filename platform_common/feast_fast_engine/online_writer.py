"""What the engine asks of an online store's writer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from feast import FeatureView
from feast.repo_config import RepoConfig

from platform_common.feast_fast_engine.encode import EncodedRows
from platform_common.feast_fast_engine.layout import ViewLayout


class OnlineWriter:
    timestamp_kind = "sqlite"

    def resume_from(self, config: RepoConfig, fv: FeatureView, start: datetime, end: datetime) -> datetime:
        """Where this run must start reading so the store ends up complete (the requested start by default)."""
        return start

    in_key_order = False  # whether the rows reach `plan` sorted by entity key, in chunks of `chunk_rows`

    def plan(self, config: RepoConfig, fv: FeatureView, layout: ViewLayout) -> Callable[[EncodedRows], Any]:
        """The part of the write that needs no connection, applied to each chunk on the reading thread."""
        return lambda rows: rows

    def write(self, config: RepoConfig, fv: FeatureView, chunks: Iterator[Any], chunk_rows: int) -> None:
        """Write the planned chunks, as they arrive, in one go: a failure leaves the store as it was, or (where
        the store has no transactions) holding a prefix of the rows, each one complete."""
        raise NotImplementedError

    def written_up_to(self, config: RepoConfig, fv: FeatureView, end: datetime) -> None:
        """Record in the store itself that it now holds this view up to `end`."""
