from datetime import date, timedelta

import pandas as pd
import pytest

from training.config import SplitConfig
from training.dataset import plan_split
from training.fingerprint import frame_fingerprint as fingerprint


def days(n: int) -> list[date]:
    return [date(2026, 10, 1) + timedelta(days=i) for i in range(n)]


def test_split_is_ordered_contiguous_and_disjoint():
    s = plan_split(days(60), SplitConfig())
    assert s.train[0] <= s.train[1] < s.valid[0] <= s.valid[1] < s.test[0] <= s.test[1]
    assert s.valid[0] - s.train[1] == timedelta(days=1)
    assert s.test[0] - s.valid[1] == timedelta(days=1)
    assert s.test[1] == date(2026, 10, 1) + timedelta(days=59)
    assert s.train[0] > date(2026, 10, 1)  # warm-up days are dropped


def test_split_refuses_too_few_days():
    with pytest.raises(ValueError, match="too few"):
        plan_split(days(5), SplitConfig())


def test_fingerprint_tracks_content_not_column_order():
    a = pd.DataFrame({"x": [1, 2], "y": [0.5, 0.25]})
    assert fingerprint(a) == fingerprint(a[["y", "x"]])
    b = a.copy()
    b.loc[1, "y"] = 0.26
    assert fingerprint(a) != fingerprint(b)
