"""The training set file through the project's ASOF store: its parts are persisted in the final order, so the
file is their concatenation, and that must be exactly the file a sort would write."""

from __future__ import annotations

from pathlib import Path

from platform_common.feast_config import get_feature_store
from platform_common.settings import Settings
from training.batches import connect
from training.config import TrainConfig
from training.fingerprint import file_fingerprint
from training.trainset import (
    JoinedParts,
    build_parquet_training_set,
    chunk_days,
    in_label_order,
    into_one_file,
    label_days,
    takes_entity_query,
)


def test_parts_persisted_in_order_concatenate_into_the_sorted_file(tiny_platform, tmp_path: Path) -> None:
    store = get_feature_store(tiny_platform)
    assert takes_entity_query(store), "the default offline store is the project's ASOF store"
    labels = tiny_platform.marts_dir / "impression_labels.parquet"
    per_day = sorted(n for _, n in label_days(labels))[0]
    # A few days per call: several parts, and ties in event_timestamp fall inside parts and across their seams.
    several = TrainConfig(query_join_chunk_rows=2 * per_day)
    assert len(chunk_days(label_days(labels), several.query_join_chunk_rows)) >= 5
    chunked = build_parquet_training_set(store, tiny_platform, several)
    whole = build_parquet_training_set(store, tiny_platform, TrainConfig())
    try:
        resorted = tmp_path / "resorted.parquet"
        into_one_file(JoinedParts((str(chunked.path),), in_order=False), resorted, tmp_path / "spill")
        assert chunked.fingerprint == file_fingerprint(resorted)
        assert chunked.fingerprint == whole.fingerprint
        assert in_label_order(chunked.path)
        with connect() as con:
            rows, label_rows = con.execute(
                f"select (select count(*) from read_parquet('{chunked.path}')), "
                f"(select count(*) from read_parquet('{labels}'))"
            ).fetchone()  # type: ignore[misc]
        assert 0 < rows < label_rows  # the warm-up days before the train window are not joined
    finally:
        chunked.remove()
        whole.remove()


def test_labels_in_any_row_order_give_the_same_training_set(tiny_platform, tmp_path: Path) -> None:
    """The mart writes its labels sorted, but the training set's order must not depend on that: the same labels,
    sorted and shuffled, give the same file. Their times are cut to the hour so that many rows tie on
    event_timestamp and only impression_id orders them (the mart's own times never tie at SCALE=tiny)."""
    store = get_feature_store(tiny_platform)
    labels = tiny_platform.marts_dir / "impression_labels.parquet"
    homes = {}
    for name, order in (("sorted", "event_timestamp, impression_id"), ("shuffled", "hash(impression_id)")):
        homes[name] = Settings(**(tiny_platform.model_dump() | {"home": tmp_path / name}))
        homes[name].marts_dir.mkdir(parents=True)
        with connect() as con:
            con.execute(
                f"copy (select * replace (date_trunc('hour', event_timestamp) as event_timestamp) "
                f"from read_parquet('{labels}') order by {order}) "
                f"to '{homes[name].marts_dir / labels.name}' (format parquet)"
            )
    assert in_label_order(homes["sorted"].marts_dir / labels.name)
    assert not in_label_order(homes["shuffled"].marts_dir / labels.name)
    per_day = sorted(n for _, n in label_days(labels))[0]
    cfg = TrainConfig(query_join_chunk_rows=2 * per_day)
    built = {name: build_parquet_training_set(store, home, cfg) for name, home in homes.items()}
    try:
        assert built["shuffled"].fingerprint == built["sorted"].fingerprint
    finally:
        for training_set in built.values():
            training_set.remove()


def test_the_training_set_path_of_the_benchmark_equals_the_hand_written_asof_join(tiny_platform) -> None:
    """`make bench-train`'s `trainset` path (labels to training set file, as `make train` builds it) returns the
    rows and values of the hand-written ASOF join: run_benchmark fails on any difference (EXCEPT ALL both ways)."""
    from benchmarks.point_in_time import run_benchmark

    results = run_benchmark(tiny_platform.home_dir, rounds=1, paths=("asof-parquet", "trainset"))
    assert {m.path for m in results} == {"asof-parquet", "trainset"}
    assert len({m.rows for m in results}) == 1 and results[0].rows > 30_000
