"""Row-for-row comparison of two builds of the marts (DuckDB vs Spark on the same raw landing zone).

Every column but the doubles must be equal exactly, types included. Doubles are compared to a relative
tolerance: both engines sum in fixed point (transforms/macros/exact_sums.sql), so the order of the summands
does not matter, but a double reaches the 128-bit integer differently (DuckDB scales it exactly; Spark goes
through the double's shortest decimal text, off by up to half a unit in the 17th significant digit), and
a rate or a median is then one division on either side. DOUBLE_RTOL bounds what that can add up to;
DOUBLE_ATOL covers sums that cancel to near zero, where one unit in the last place of a summand is a large
share of the result. The measured gaps are in docs/benchmarks.md, "Spark".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

DOUBLE_RTOL = 1e-12
DOUBLE_ATOL = 1e-12


@dataclass
class MartDiff:
    name: str
    problems: list[str] = field(default_factory=list)
    max_relative_gap: float = 0.0


def mart_files(root: Path) -> dict[str, Path]:
    """`marts/<name>.parquet` and `merchant_growth/<name>.parquet` of one state folder, by relative name."""
    return {
        path.relative_to(root).as_posix(): path
        for folder in ("marts", "merchant_growth")
        for path in sorted((root / folder).glob("*.parquet"))
    }


def compare_frames(name: str, left: pd.DataFrame, right: pd.DataFrame) -> MartDiff:
    """Rows matched by every non-double column (sorted on them), doubles to DOUBLE_RTOL, the rest exactly."""
    diff = MartDiff(name)
    if list(left.columns) != list(right.columns):
        diff.problems.append(f"columns differ: {list(left.columns)} vs {list(right.columns)}")
        return diff
    mismatched = [f"{c}: {left[c].dtype} vs {right[c].dtype}" for c in left.columns if left[c].dtype != right[c].dtype]
    if mismatched:
        diff.problems.append("types differ: " + ", ".join(mismatched))
        return diff
    if len(left) != len(right):
        diff.problems.append(f"{len(left)} rows vs {len(right)}")
        return diff
    doubles = [c for c in left.columns if pd.api.types.is_float_dtype(left[c])]
    keys = [c for c in left.columns if c not in doubles]
    left = left.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
    right = right.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
    for column in keys:
        unequal = ~((left[column] == right[column]) | (left[column].isna() & right[column].isna()))
        if unequal.any():
            row = int(np.flatnonzero(unequal.to_numpy())[0])
            diff.problems.append(
                f"{column}: {int(unequal.sum())} rows differ, first at row {row}: "
                f"{left[column].iloc[row]!r} vs {right[column].iloc[row]!r}"
            )
    for column in doubles:
        a, b = left[column].to_numpy(dtype=float), right[column].to_numpy(dtype=float)
        both_nan = np.isnan(a) & np.isnan(b)
        close = np.isclose(a, b, rtol=DOUBLE_RTOL, atol=DOUBLE_ATOL) | both_nan
        if not close.all():
            row = int(np.flatnonzero(~close)[0])
            diff.problems.append(
                f"{column}: {int((~close).sum())} rows beyond rtol {DOUBLE_RTOL}, "
                f"first at row {row}: {a[row]!r} vs {b[row]!r}"
            )
        finite = ~both_nan & (a != b)
        if finite.any():
            gap = np.abs(a[finite] - b[finite]) / np.maximum(np.abs(a[finite]), np.abs(b[finite]))
            diff.max_relative_gap = max(diff.max_relative_gap, float(np.nanmax(gap)))
    return diff


def compare_builds(left_home: Path, right_home: Path) -> list[MartDiff]:
    """Every mart of two state folders compared; a mart present on one side only is a problem too."""
    left_files, right_files = mart_files(left_home), mart_files(right_home)
    diffs = []
    for name in sorted(left_files.keys() | right_files.keys()):
        if name not in left_files or name not in right_files:
            diffs.append(MartDiff(name, [f"only in {left_home if name in left_files else right_home}"]))
            continue
        left = pq.read_table(left_files[name]).to_pandas()
        right = pq.read_table(right_files[name]).to_pandas()
        diffs.append(compare_frames(name, left, right))
    return diffs
