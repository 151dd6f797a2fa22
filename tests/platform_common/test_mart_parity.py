"""The parity check of two mart builds, on small hand-made frames: it must catch what it exists to catch."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from platform_common.mart_parity import DOUBLE_RTOL, compare_builds, compare_frames


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "feature_date": pd.to_datetime(["2026-10-01", "2026-10-02", "2026-10-01"]).date,
            "clicks_30d": pd.array([1, 2, 0], dtype="int64"),
            "ctr_30d": [0.1, 0.25, float("nan")],
        }
    )


def test_equal_frames_in_another_row_order_match() -> None:
    left = frame()
    diff = compare_frames("m", left, left.iloc[::-1].reset_index(drop=True))
    assert diff.problems == []
    assert diff.max_relative_gap == 0.0


def test_doubles_within_the_tolerance_match_and_the_gap_is_measured() -> None:
    right = frame()
    right.loc[1, "ctr_30d"] = 0.25 * (1 + DOUBLE_RTOL / 10)
    diff = compare_frames("m", frame(), right)
    assert diff.problems == []
    assert 0 < diff.max_relative_gap < DOUBLE_RTOL


def test_a_double_beyond_the_tolerance_is_reported() -> None:
    right = frame()
    right.loc[0, "ctr_30d"] = 0.1 * (1 + 100 * DOUBLE_RTOL)
    (problem,) = compare_frames("m", frame(), right).problems
    assert problem.startswith("ctr_30d: 1 rows beyond")


def test_an_integer_off_by_one_is_reported() -> None:
    right = frame()
    right.loc[2, "clicks_30d"] = 1
    assert any(p.startswith("clicks_30d") for p in compare_frames("m", frame(), right).problems)


def test_a_null_against_a_value_is_reported() -> None:
    right = frame()
    right.loc[2, "ctr_30d"] = 0.0
    assert compare_frames("m", frame(), right).problems


def test_a_missing_row_or_a_changed_type_is_reported() -> None:
    assert compare_frames("m", frame(), frame().iloc[:2]).problems == ["3 rows vs 2"]
    right = frame().astype({"clicks_30d": "float64"})
    assert compare_frames("m", frame(), right).problems[0].startswith("types differ")


def test_builds_compare_every_mart_and_flag_one_built_on_one_side_only(tmp_path: Path) -> None:
    for home in ("a", "b"):
        (tmp_path / home / "marts").mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(frame(), preserve_index=False), tmp_path / home / "marts" / "f.parquet")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "a" / "marts" / "only_a.parquet")
    diffs = {diff.name: diff for diff in compare_builds(tmp_path / "a", tmp_path / "b")}
    assert diffs["marts/f.parquet"].problems == []
    assert diffs["marts/only_a.parquet"].problems == [f"only in {tmp_path / 'a'}"]
