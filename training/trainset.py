"""The point-in-time training set as a parquet file, never whole in pandas (the default training path).

Feast joins the label impressions to their features as of each impression (`get_historical_features`) and
`persist`s the result to parquet. The label days are joined in chunks of whole days: Feast's stock DuckDB store
persists through an in-memory Arrow table, so one chunk is what it holds at a time (an offline store that
streams its join to parquet is simply called fewer times). Joining a chunk of days alone gives the same rows:
a row's features depend only on its own entity keys and timestamp. The chunks then become one file ordered by
(event_timestamp, impression_id), which fixes the row order every later pass relies on; the fingerprint
(training/fingerprint.py), the split windows, the vocabularies and the XGBoost matrices are all read from it
in bounded batches.

That order costs one sort. The project's ASOF store (platform_common/feast_offline_store) persists each chunk
sorted by (event_timestamp, the entity rows' order), so it is given the label rows ordered by (event_timestamp,
impression_id) (the mart writes them so; if a labels file is not, the join's entity query sorts them): each part
comes out in the final order and, the chunks being consecutive days, the file is the parts one after another
(a copy, no sort). Feast's stock and Spark stores keep no order, so DuckDB sorts their
parts into the file, spilling to disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from feast import FeatureStore
from feast.infra.offline_stores.file_source import SavedDatasetFileStorage
from feast.saved_dataset import SavedDatasetStorage

from platform_common.feast_offline_store.sql import string_literal
from platform_common.feature_spec import FeatureSpec
from platform_common.settings import Settings
from training.batches import DayWindow, RowSource, connect, quantile_matrix, quote, where_clause
from training.bundle import DAY_KIND_FEATURE, PLAN_PRICE_FEATURE, RankerBundle
from training.config import TrainConfig
from training.dataset import FeatureColumns, TimeSplit, feature_columns, plan_split
from training.fingerprint import file_fingerprint

TRAINSET_FILE = "trainset.parquet"
ROW_GROUP_ROWS = 122_880  # DuckDB's default: small enough that a day window skips most of the file


@dataclass(frozen=True)
class Augment:
    """Columns added to the training set before fitting, as SQL expressions over its rows (window functions
    allowed): the leakage test plants a leak with it. name -> expression."""

    columns: Mapping[str, str]


def label_days(labels: Path) -> list[tuple[date, int]]:
    """(UTC day, label rows) for every label day, oldest first."""
    with connect() as con:
        rows = con.sql(
            f"select cast(event_timestamp as date) d, count(*) from read_parquet('{labels}') group by d order by d"
        ).fetchall()
    return [(d, int(n)) for d, n in rows]


def chunk_days(days: Sequence[tuple[date, int]], max_rows: int) -> list[DayWindow]:
    """Consecutive whole days grouped into windows of at most `max_rows` label rows (a bigger day is alone)."""
    windows: list[DayWindow] = []
    start: date | None = None
    last: date | None = None
    rows = 0
    for day, n in days:
        if start is not None and last is not None and rows + n > max_rows:
            windows.append((start, last))
            start, rows = None, 0
        start = day if start is None else start
        last, rows = day, rows + n
    if start is not None and last is not None:
        windows.append((start, last))
    return windows


def entity_frame(labels: Path, window: DayWindow) -> pd.DataFrame:
    """One chunk's label rows, as the entity frame Feast's stock DuckDB store requires (pandas)."""
    with connect() as con:
        table = con.sql(
            f"select * from read_parquet('{labels}') where {where_clause([window])} order by event_timestamp, "
            "impression_id"
        ).to_arrow_table()
    frame = table.to_pandas()
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


def is_spark_store(store: FeatureStore) -> bool:
    """Feast's Spark offline store (SHOPRANK_OFFLINE_ENGINE=spark, platform_common/feast_config.py)."""
    return getattr(store.config.offline_store, "type", None) == "spark"


def takes_entity_query(store: FeatureStore) -> bool:
    """The project's ASOF offline store (platform_common/feast_offline_store) takes the entity rows as a DuckDB
    query, so they never pass through pandas and a join call is bounded by DuckDB's memory_limit, not its size."""
    from platform_common.feast_config import OFFLINE_STORE_TYPE

    return getattr(store.config.offline_store, "type", None) == OFFLINE_STORE_TYPE


def join_chunk_rows(store: FeatureStore, cfg: TrainConfig) -> int:
    return cfg.query_join_chunk_rows if takes_entity_query(store) else cfg.join_chunk_rows


@dataclass(frozen=True)
class JoinedParts:
    """The files a point-in-time join wrote (paths or globs, in order), and whether reading them in that order
    already gives the training set's order."""

    files: tuple[str, ...]
    in_order: bool

    def sql(self) -> str:
        """The `read_parquet` argument: a list keeps the files in its order."""
        return "[" + ", ".join(string_literal(f) for f in self.files) + "]"


LABEL_ORDER = "order by event_timestamp, impression_id"


def in_label_order(labels: Path) -> bool:
    """True if the labels file's rows are in (event_timestamp, impression_id) order, as the mart writes them: one
    streaming pass (0.2 CPU s for 5M rows), where sorting them in every join call cost seconds and memory."""
    with connect() as con:
        row = con.execute(
            "select count(*) filter (where t0 is not null and (event_timestamp, impression_id) <= (t0, i0)) from ("
            "select event_timestamp, impression_id, lag(event_timestamp) over () t0, lag(impression_id) over () i0 "
            f"from read_parquet({string_literal(str(labels))}))"
        ).fetchone()
    return row is not None and row[0] == 0


def persist_join(
    store: FeatureStore, cfg: TrainConfig, labels: Path, windows: Sequence[DayWindow], out: Path
) -> JoinedParts:
    """Feast's point-in-time join of each window's labels, persisted through Feast's API under `out`. DuckDB
    stores write one file per window (out/part-N.parquet); the Spark store writes from Spark itself, a folder of
    part files per window (out/part-N/part-*.parquet), so the rows never pass through the driver's pandas on
    their way out."""
    spark = is_spark_store(store)
    query = takes_entity_query(store)
    service = store.get_feature_service(cfg.feature_service)
    written: list[str] = []
    order = "" if not query or in_label_order(labels) else f" {LABEL_ORDER}"
    for i, window in enumerate(windows):
        entity_df: pd.DataFrame | str = (
            f"select * from read_parquet('{labels}') where {where_clause([window])}{order}"
            if query
            else entity_frame(labels, window)
        )
        job = store.get_historical_features(
            entity_df=entity_df,
            features=service,
            full_feature_names=False,
            filter_by_created_timestamp=cfg.filter_by_created_timestamp,
        )
        stem = out / f"part-{i:05d}"
        job.persist(_storage(stem, spark), allow_overwrite=True)
        written.append(f"{stem}.parquet")
        del job  # the stock store's job holds its entity frame
    if spark:
        return JoinedParts((f"{out}/*/*.parquet",), in_order=False)
    # The ASOF store's persist order is (event_timestamp, entity row order) = (event_timestamp, impression_id)
    # here, and the windows are consecutive, ascending and disjoint.
    return JoinedParts(tuple(written), in_order=query)


def _storage(stem: Path, spark: bool) -> SavedDatasetStorage:
    if spark:
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SavedDatasetSparkStorage

        return SavedDatasetSparkStorage(path=str(stem), file_format="parquet")
    return SavedDatasetFileStorage(path=f"{stem}.parquet")


def into_one_file(parts: JoinedParts, out: Path, spill_dir: Path, augment: Augment | None = None) -> None:
    """All parts in one file ordered by (event_timestamp, impression_id). Parts already in that order are moved
    (one part) or copied one after another; otherwise DuckDB sorts them, spilling to disk. With `augment` (window
    functions may reorder what they read) the rows are sorted either way."""
    extra = "".join(f", ({expr}) as {quote(name)}" for name, expr in (augment.columns if augment else {}).items())
    in_order = parts.in_order and not extra
    if in_order and len(parts.files) == 1 and "*" not in parts.files[0]:
        # persist wrote it with DuckDB's default row groups (ROW_GROUP_ROWS) and snappy: rewriting it only to
        # recompress cost about a tenth of the build's CPU at SCALE=medium
        os.replace(parts.files[0], out)
        return
    order = "" if in_order else f" {LABEL_ORDER}"
    with connect(spill_dir) as con:
        con.execute(
            f"copy (select *{extra} from read_parquet({parts.sql()}){order}) "
            f"to '{out}' (format parquet, compression zstd, row_group_size {ROW_GROUP_ROWS})"
        )


@dataclass(frozen=True)
class ParquetTrainingSet:
    """The training set file and how it splits; implements training.fitting.TrainingData."""

    path: Path
    split: TimeSplit
    columns: FeatureColumns
    fingerprint: str
    spill_dir: Path
    batch_rows: int = field(default=131_072)
    # Share of non-clicked rows in the matrices the all-impressions heads fit and early-stop on
    # (TrainConfig.max_train_negatives); the CVR method's choice, the orders and the test rows read every row.
    negative_keep: float = 1.0

    def remove(self) -> None:
        """Delete the training set's folder (gigabytes at scale); the frozen test rows stay under their fingerprint."""
        shutil.rmtree(self.path.parent, ignore_errors=True)

    def source(self, parts: Sequence[str], clicked_only: bool = False, sampled: bool = False) -> RowSource:
        """The rows of `parts`; `sampled`: with the non-clicked rows cut to `negative_keep` (the matrices the heads
        fit and early-stop on: weighted back, the validation log loss stays an unbiased estimate)."""
        windows = tuple(getattr(self.split, p) for p in parts)
        return RowSource(self.path, windows, clicked_only, self.spill_dir, self.negative_keep if sampled else 1.0)

    def fit_spec(self, feature_service: str, numeric: Sequence[str]) -> FeatureSpec:
        """FeatureSpec.fit on the distinct values of each categorical column in the train rows (DuckDB finds
        them; FeatureSpec.fit then applies its own rules to them, as it would to the whole frame)."""
        distinct: dict[str, pd.Series] = {}
        train = self.source(["train"])
        with connect(self.spill_dir) as con:
            for col in self.columns.categorical:
                sql = f"select distinct {quote(col)} from ({train.sql([col])}) where {quote(col)} is not null"
                distinct[col] = pd.Series(con.sql(sql).to_arrow_table().column(0).to_pylist(), dtype=object)
        return FeatureSpec.fit(pd.DataFrame(distinct), feature_service, numeric, self.columns.categorical)

    def matrix(
        self, spec: FeatureSpec, parts: tuple[str, ...], clicked_only: bool, nthread: int, ref: xgb.DMatrix | None
    ) -> xgb.DMatrix:
        return quantile_matrix(self.source(parts, clicked_only, sampled=True), spec, nthread, ref, self.batch_rows)

    def labels(self, parts: tuple[str, ...], label: str, clicked_only: bool) -> np.ndarray:
        return self.source(parts, clicked_only, sampled=True).column(label)

    def head_scores(self, bundle: RankerBundle, part: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        assert bundle.spec is not None
        raw: dict[str, list[np.ndarray]] = {}
        converted: list[np.ndarray] = []
        for frame in self.source([part]).frames([*bundle.spec.inputs, "converted"], self.batch_rows):
            for head, scores in bundle.head_scores(bundle.spec.frame_matrix(frame)).items():
                raw.setdefault(head, []).append(scores)
            converted.append(frame["converted"].to_numpy())
        return {h: np.concatenate(s) for h, s in raw.items()}, np.concatenate(converted)

    def orders(self, parts: tuple[str, ...]) -> pd.DataFrame:
        source = self.source(parts)
        cols = ["price", "order_gmv", *(c for c in (DAY_KIND_FEATURE, PLAN_PRICE_FEATURE) if c in self.columns.numeric)]
        with connect(self.spill_dir) as con:
            table = con.sql(f"select {', '.join(quote(c) for c in cols)} from ({source.sql([*cols, 'converted'])}) "
                            "where converted = 1").to_arrow_table()  # fmt: skip
        return table.to_pandas()

    def save_test_set(self, settings: Settings) -> Path:
        """Freeze the test rows (streamed by DuckDB) so promotion scores champion and challenger on the same rows."""
        out = settings.datasets_dir / self.fingerprint / "test.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        with connect(self.spill_dir) as con:
            con.execute(f"copy (select * from read_parquet('{self.path}') where {where_clause([self.split.test])}) "
                        f"to '{out}' (format parquet, compression zstd)")  # fmt: skip
        return out


def build_parquet_training_set(
    store: FeatureStore, settings: Settings, cfg: TrainConfig, augment: Augment | None = None
) -> ParquetTrainingSet:
    labels = settings.marts_dir / "impression_labels.parquet"
    if not labels.exists():
        raise FileNotFoundError(f"{labels} is missing: run `make features` (dbt build) first")
    days = label_days(labels)
    split = plan_split([d for d, _ in days], cfg.split)
    windows = chunk_days([(d, n) for d, n in days if d >= split.train[0]], join_chunk_rows(store, cfg))
    # A folder of its own per build: two trainings on one state folder must not delete each other's files.
    (settings.datasets_dir / "training_set").mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"{cfg.feature_service}-", dir=settings.datasets_dir / "training_set"))
    parts, spill = root / "parts", root / "spill"
    parts.mkdir()
    joined = persist_join(store, cfg, labels, windows, parts)
    path = root / TRAINSET_FILE
    into_one_file(joined, path, spill, augment)
    shutil.rmtree(parts)
    columns = feature_columns(store, cfg.feature_service)
    keep = negative_keep_share(RowSource(path, (split.train,), spill_dir=spill), cfg.max_train_negatives)
    return ParquetTrainingSet(path, split, columns, file_fingerprint(path, spill), spill, negative_keep=keep)


def negative_keep_share(train: RowSource, max_negatives: int) -> float:
    """The share of the train days' non-clicked rows to keep so that at most `max_negatives` remain (1: all)."""
    with connect(train.spill_dir) as con:
        row = con.execute(f"select count(*) from ({train.sql(['clicked'])}) where clicked = 0").fetchone()
    negatives = int(row[0]) if row else 0
    return 1.0 if negatives <= max_negatives else max_negatives / negatives
