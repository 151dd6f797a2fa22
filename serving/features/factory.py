"""Pick and build the online feature reader for a read mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from serving.features.base import DEFAULT_POLL_SECONDS, DEFAULT_READ_MODE, READ_MODES, FeatureReader
from serving.features.direct import DirectReader
from serving.features.feast import FeastReader
from serving.features.snapshot import SnapshotReader
from serving.features.store import sqlite_path
from serving.observability import reader_state_hook

if TYPE_CHECKING:
    from feast import FeatureStore


def check_mode(mode: str) -> str:
    """The mode, if it is one of READ_MODES; else a ValueError naming the valid ones."""
    if mode not in READ_MODES:
        raise ValueError(f"SHOPRANK_FEATURE_READ={mode!r}: expected one of {', '.join(READ_MODES)}")
    return mode


def make_reader(
    store_factory: Callable[[], FeatureStore],
    feature_service: str,
    mode: str = DEFAULT_READ_MODE,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    previous: FeatureReader | None = None,
) -> FeatureReader:
    """The online feature reader for `mode`: snapshot (the default), direct or feast.

    All three return the same values (tests/serving/test_fast_features.py). `snapshot` reads Feast's SQLite
    online store into memory and polls the registry every `poll_seconds`; for any other online store it falls
    back to `direct`. A `previous` reader built for the same mode and feature service is returned as is (a new
    model version on the same features keeps the snapshot); otherwise it is closed once the new one is built.
    """
    check_mode(mode)
    if previous is not None and previous.feature_service == feature_service and previous.requested_mode == mode:
        return previous
    reader: FeatureReader
    if mode == "feast":
        reader = FeastReader(store_factory(), feature_service)
    else:
        store = store_factory()
        if mode == "snapshot" and sqlite_path(store) is not None:
            reader = SnapshotReader(store_factory, feature_service, poll_seconds, on_refresh=reader_state_hook)
        else:
            reader = DirectReader(store, feature_service, requested_mode=mode)
    if previous is not None:
        previous.close()
    return reader
