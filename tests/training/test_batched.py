"""The batched training path (parquet -> DataIter -> QuantileDMatrix) against the in-memory one, on a synthetic
training set small enough to hold whole and read here in many batches (so batching really happens)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from platform_common.feature_spec import FeatureSpec
from training.batches import RowBatches
from training.bundle import RankerBundle, write_artifacts
from training.config import SplitConfig, TrainConfig, XGBConfig
from training.dataset import FeatureColumns, TrainingSet, plan_split
from training.fingerprint import file_fingerprint, frame_fingerprint
from training.guards import fast_auc
from training.train import fit
from training.trainset import ParquetTrainingSet

N_DAYS, ROWS_PER_DAY, BATCH = 20, 500, 777  # 777: batches straddle days and windows
COLUMNS = FeatureColumns(numeric=("position", "x", "count_7d"), categorical=("surface", "colour"), feature_refs=())
CFG = TrainConfig(xgb=XGBConfig(num_boost_round=60, early_stopping_rounds=10, min_child_weight=2.0))


def synthetic(seed: int = 5) -> pd.DataFrame:
    """Impressions with a learnable click rate, a sparser conversion, an integer feature with gaps and a
    categorical feature with a missing value, sorted as the training set file is."""
    rng = np.random.default_rng(seed)
    n = N_DAYS * ROWS_PER_DAY
    start = datetime(2026, 10, 1, tzinfo=UTC)
    ts = [start + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, N_DAYS * 86400, n))]
    x = rng.normal(size=n)
    colour = rng.choice(np.array(["red", "blue", "green", None], dtype=object), n)
    position = rng.integers(1, 11, n)
    logit = -2.5 + 1.2 * x + 0.6 * (colour == "red") - 0.1 * position
    clicked = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    converted = clicked * (rng.random(n) < 1 / (1 + np.exp(-(-1.0 + x)))).astype(np.int64)
    price = np.round(rng.lognormal(3, 0.7, n), 2)
    count = rng.integers(0, 30, n).astype(float)
    count[rng.random(n) < 0.2] = np.nan  # Feast's Int64 with missing values: float64 in pandas
    frame = pd.DataFrame(
        {
            "impression_id": [f"imp_{i:06d}" for i in range(n)],
            "request_id": [f"req_{i // 8:06d}" for i in range(n)],
            "event_timestamp": pd.to_datetime(ts, utc=True).astype("datetime64[us, UTC]"),
            "surface": rng.choice(["home_feed", "search", "short_video"], n),
            "position": position,
            "x": x,
            "count_7d": count,
            "colour": colour,
            "clicked": clicked,
            "converted": converted,
            "price": price,
            "order_gmv": converted * price * rng.integers(1, 3, n),
        }
    )
    return frame.sort_values(["event_timestamp", "impression_id"], ignore_index=True)


def split_of(frame: pd.DataFrame):
    days = sorted(frame["event_timestamp"].dt.date.unique())
    return plan_split(days, SplitConfig())


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[ParquetTrainingSet, TrainingSet]:
    root = tmp_path_factory.mktemp("trainset")
    frame = synthetic()
    path = root / "trainset.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=1000)
    split = split_of(frame)
    batched = ParquetTrainingSet(path, split, COLUMNS, file_fingerprint(path), root / "spill", batch_rows=BATCH)
    in_memory = TrainingSet(frame=pd.read_parquet(path), split=split, columns=COLUMNS, fingerprint="-")
    return batched, in_memory


def spec_of(data: ParquetTrainingSet | TrainingSet) -> FeatureSpec:
    return data.fit_spec("test_service", COLUMNS.numeric)


def drain(batches: RowBatches) -> list[np.ndarray]:
    """One pass of the iterator as XGBoost makes it: next() until False."""
    seen: list[np.ndarray] = []
    while batches.next(lambda data, **_: seen.append(data)):
        pass
    return seen


def test_data_iter_covers_every_row_exactly_once_per_pass(both):
    batched, in_memory = both
    spec = spec_of(batched)
    expected = spec.frame_matrix(in_memory.rows(("train", "valid")))
    batches = RowBatches(batched.source(["train", "valid"]), spec, batch_rows=BATCH)
    for _ in range(2):  # QuantileDMatrix makes two passes: the second must see the same rows again
        batches.reset()
        seen = drain(batches)
        assert len(seen) > 3, "the test must exercise several batches"
        assert batches.rows_seen == len(expected)
        np.testing.assert_array_equal(np.concatenate(seen), expected)  # same rows, same order, NaN where NaN


def test_cvr_head_reads_clicked_rows_only(both):
    batched, in_memory = both
    frames = list(batched.source(["train"], clicked_only=True).frames(["impression_id", "clicked"], BATCH))
    rows = pd.concat(frames, ignore_index=True)
    assert len(rows) > 0 and (rows["clicked"] == 1).all()
    assert rows["impression_id"].tolist() == in_memory.rows(("train",), clicked_only=True)["impression_id"].tolist()
    spec = spec_of(batched)
    matrix = batched.matrix(spec, ("train",), True, 1, None)
    assert matrix.num_row() == len(rows)


def test_statistics_from_duckdb_equal_the_in_memory_ones(both):
    batched, in_memory = both
    assert spec_of(batched) == spec_of(in_memory)
    assert spec_of(batched).vocabularies["colour"] == ("blue", "green", "red")  # None is not a category
    pd.testing.assert_frame_equal(
        batched.orders(("train", "valid")).reset_index(drop=True),
        in_memory.orders(("train", "valid")).reset_index(drop=True),
    )
    for label in ("clicked", "converted"):
        np.testing.assert_array_equal(
            batched.labels(("valid",), label, True), in_memory.labels(("valid",), label, True)
        )


def test_batched_and_in_memory_give_the_same_model(both, tmp_path: Path):
    """Same rows, same order, same parameters: the same trees, hence the same predictions. Here every feature
    has few enough distinct values for XGBoost's quantile sketch to be exact, merged from batches
    (QuantileDMatrix) or built from all rows at once (DMatrix); with millions of rows the merged sketch can
    place a bin edge differently, so the benchmark (benchmarks/train.py) compares test AUCs at SCALE=small."""
    batched, in_memory = both
    test = in_memory.part("test")
    scores = {}
    for name, data in (("batched", batched), ("in_memory", in_memory)):
        fitted = fit(data, CFG, tmp_path / name)
        bundle = RankerBundle()
        bundle.load_from_paths(write_artifacts(tmp_path / name / "bundle", fitted.spec, fitted.boosters, fitted.config))
        scores[name] = (bundle.score_matrix(fitted.spec.frame_matrix(test)), fitted)
    (a, fa), (b, fb) = scores["batched"], scores["in_memory"]
    clicked = test["clicked"].to_numpy() == 1
    auc_ctr = [fast_auc(test["clicked"].to_numpy(), s["pctr"]) for s in (a, b)]
    auc_cvr = [fast_auc(test["converted"].to_numpy()[clicked], s["pcvr"][clicked]) for s in (a, b)]
    assert auc_ctr[0] > 0.7, "the synthetic click signal must be learnt, or the comparison proves nothing"
    for head in ("pctr", "pcvr", "pctcvr"):
        np.testing.assert_array_equal(a[head], b[head])
    assert auc_ctr[0] == pytest.approx(auc_ctr[1], abs=1e-3)
    assert auc_cvr[0] == pytest.approx(auc_cvr[1], abs=1e-3)
    assert fa.config == fb.config
    assert {h: b.num_boosted_rounds() for h, b in fa.boosters.items()} == {
        h: b.num_boosted_rounds() for h, b in fb.boosters.items()
    }


def test_fingerprint_is_deterministic_and_tracks_values(tmp_path: Path):
    frame = synthetic(seed=9)
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), a, row_group_size=500)
    # same content in another column order and another row-group layout: the same fingerprint
    reordered = frame[list(reversed(frame.columns))]
    pq.write_table(pa.Table.from_pandas(reordered, preserve_index=False), b, row_group_size=3000)
    assert file_fingerprint(a) == file_fingerprint(a) == file_fingerprint(b)
    changed = frame.copy()
    changed.loc[7777, "x"] += 1e-9
    pq.write_table(pa.Table.from_pandas(changed, preserve_index=False), c)
    assert file_fingerprint(c) != file_fingerprint(a)


def test_both_training_paths_share_one_fingerprint(tmp_path: Path):
    """`train --in-memory` hashes its frame as the batched path hashes the file: same rows, same fingerprint,
    whatever order the frame's rows come in (Feast returns them in the entity frame's order)."""
    frame = synthetic(seed=9)
    path = tmp_path / "trainset.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    shuffled = frame.sample(frac=1.0, random_state=3)
    assert frame_fingerprint(shuffled) == frame_fingerprint(frame) == file_fingerprint(path)
    assert frame_fingerprint(frame.drop(index=5)) != file_fingerprint(path)


def test_split_windows_select_utc_days(both):
    batched, in_memory = both
    for part in ("train", "valid", "test"):
        ids = pd.concat(list(batched.source([part]).frames(["impression_id"], BATCH)), ignore_index=True)
        assert ids["impression_id"].tolist() == in_memory.part(part)["impression_id"].tolist()
    assert batched.split.test[1] == date(2026, 10, 1) + timedelta(days=N_DAYS - 1)


def test_negative_sampling_keeps_every_click_a_fixed_share_of_the_rest_and_weights_it_back(both):
    """TrainConfig.max_train_negatives: above it, the CTR and CTCVR heads fit on every clicked row and a hash sample
    of the others weighted 1 / keep. Validation alone and the CVR head's clicked rows are never sampled."""
    import dataclasses

    from training.trainset import negative_keep_share

    batched, in_memory = both
    train = batched.source(["train"])
    negatives = int((in_memory.rows(("train",))["clicked"] == 0).sum())
    assert negative_keep_share(train, negatives) == 1.0 and negative_keep_share(train, negatives + 5) == 1.0
    assert negative_keep_share(train, negatives // 4) == pytest.approx(0.25, rel=0.01)

    sampled = dataclasses.replace(batched, negative_keep=0.3)
    cols = ["impression_id", "clicked"]
    rows = pd.concat(sampled.source(["train"], sampled=True).frames(cols, BATCH), ignore_index=True)
    again = pd.concat(sampled.source(["train"], sampled=True).frames(cols, BATCH), ignore_index=True)
    full = in_memory.rows(("train",))
    assert rows["impression_id"].tolist() == again["impression_id"].tolist()  # the same sample every time
    assert (rows["clicked"] == 1).sum() == (full["clicked"] == 1).sum()  # every click kept
    kept = (rows["clicked"] == 0).sum() / (full["clicked"] == 0).sum()
    assert 0.25 < kept < 0.35, kept
    # the clicked-only rows are whole; so is every row set read for anything but a matrix (test, orders, the CVR
    # method's validation scores); the validation matrix early stopping watches is sampled and weighted alike
    assert sampled.source(["train"], True, sampled=True).count() == batched.source(["train"], True).count()
    assert sampled.source(["valid"]).count() == batched.source(["valid"]).count()
    assert sampled.source(["test"]).count() == batched.source(["test"]).count()
    assert sampled.source(["valid"], sampled=True).count() < batched.source(["valid"]).count()
    assert len(sampled.orders(("train", "valid"))) == len(batched.orders(("train", "valid")))
    valid = sampled.matrix(spec_of(batched), ("valid",), False, 1, None)
    assert (
        valid.num_row()
        == sampled.source(["valid"], sampled=True).count()
        == len(sampled.labels(("valid",), "clicked", False))
    )

    spec = spec_of(batched)
    matrix = sampled.matrix(spec, ("train",), False, 1, None)
    labels = sampled.labels(("train",), "clicked", False)
    assert matrix.num_row() == len(rows) == len(labels)
    np.testing.assert_array_equal(labels, rows["clicked"].to_numpy())
    np.testing.assert_allclose(matrix.get_weight(), np.where(labels == 1, 1.0, 1 / 0.3))
    assert batched.matrix(spec, ("train",), False, 1, None).get_weight().size == 0  # unsampled: no weights


def test_a_model_fit_on_sampled_negatives_stays_calibrated(both, tmp_path: Path):
    import dataclasses

    batched, in_memory = both
    test = in_memory.part("test")
    results = {}
    for keep in (1.0, 0.3):
        data = dataclasses.replace(batched, negative_keep=keep)
        fitted = fit(data, CFG, tmp_path / str(keep))
        bundle = RankerBundle()
        bundle.load_from_paths(write_artifacts(tmp_path / str(keep), fitted.spec, fitted.boosters, fitted.config))
        pctr = bundle.score_matrix(fitted.spec.frame_matrix(test))["pctr"]
        results[keep] = (fast_auc(test["clicked"].to_numpy(), pctr), float(pctr.mean()))
    ctr = float(test["clicked"].mean())
    (auc_full, mean_full), (auc_sampled, mean_sampled) = results[1.0], results[0.3]
    assert auc_sampled > auc_full - 0.03, results
    # weighted back, the mean prediction stays at the click rate; unweighted it would be about 2x too high
    assert abs(mean_sampled - ctr) < 0.25 * ctr, (mean_sampled, ctr)
    assert abs(mean_sampled - mean_full) < 0.2 * mean_full, results


def test_the_asof_store_takes_the_labels_as_a_query_in_large_calls_and_feast_s_own_in_small_frames():
    from types import SimpleNamespace

    from platform_common.feast_config import OFFLINE_STORE_TYPE
    from training.trainset import join_chunk_rows, takes_entity_query

    cfg = TrainConfig()
    ours = SimpleNamespace(config=SimpleNamespace(offline_store=SimpleNamespace(type=OFFLINE_STORE_TYPE)))
    stock = SimpleNamespace(config=SimpleNamespace(offline_store=SimpleNamespace(type="duckdb")))
    assert takes_entity_query(ours) and not takes_entity_query(stock)  # type: ignore[arg-type]
    assert join_chunk_rows(ours, cfg) == cfg.query_join_chunk_rows > cfg.join_chunk_rows  # type: ignore[arg-type]
    assert join_chunk_rows(stock, cfg) == cfg.join_chunk_rows  # type: ignore[arg-type]
