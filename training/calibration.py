"""A CVR head that knows the day kind: the conversion level of each kind of the published campaign plan is the head's
starting point (XGBoost's base margin), and the trees learn what differs from it (issue 18, section 4;
docs/calendar_models.md, "Calibration by day kind").

Why: early stopping watches the validation days, the newest ones, and a validation window rarely holds a campaign
day, so it stops the CVR head long before its trees have moved the mega-sale rows up to their level; the head
under-predicted p(order | click) on the mega day (seen: 0.115 against the oracle's 0.125). Given the level of each
kind from the start, the trees do not have to learn it: the level is the mean of the fitted days' clicked rows of
that kind, the plainest estimate there is, and it holds however early the trees stop.

The head is trained with `base_score` 0.5 (a margin of 0), so its own output is the trees alone; the bundle adds the
row's margin back on every scoring path (`RankerBundle.calibrate`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

# A kind needs this many orders in the fitted days to get its own level; rarer kinds start from the pooled one.
MIN_ORDERS = 50


class DayKindMargins(BaseModel):
    """Logit of the clicked rows' conversion rate per plan day kind ("0" ordinary, "1" campaign, "2" mega sale),
    and over all rows for a row whose plan has not landed or whose kind had too few orders."""

    model_config = ConfigDict(frozen=True)

    pooled: float
    by_kind: dict[str, float] = {}

    def rows(self, day_kind: np.ndarray) -> np.ndarray:
        margins = np.full(len(day_kind), self.pooled)
        for name, margin in self.by_kind.items():
            margins[day_kind == float(name)] = margin
        return margins


def as_day_kinds(values: np.ndarray) -> np.ndarray:
    """A day-kind column as float with NaN where no plan had landed (Arrow and pandas give nullable integers)."""
    return np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=np.float64)


def _logit(rate: float) -> float:
    rate = min(max(rate, 1e-6), 1.0 - 1e-6)
    return float(np.log(rate / (1.0 - rate)))


def fit_day_kind_margins(converted: np.ndarray, day_kind: np.ndarray, min_orders: int = MIN_ORDERS) -> DayKindMargins:
    """The margins from the clicked rows the head is fitted on (their `converted` labels and plan day kinds)."""
    if len(converted) == 0:
        raise ValueError("no clicked rows to fit the CVR head's day-kind margins on")
    by_kind: dict[str, float] = {}
    for kind in sorted(set(day_kind[np.isfinite(day_kind)].tolist())):
        y = converted[day_kind == kind]
        if y.sum() >= min_orders:
            by_kind[str(int(kind))] = _logit(float(y.mean()))
    return DayKindMargins(pooled=_logit(float(converted.mean())), by_kind=by_kind)
