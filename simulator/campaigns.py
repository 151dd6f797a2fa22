"""The simulated days and the marketplace's campaign calendar.

South-East Asian marketplaces run a sale on every "double day" (3.3, 6.6, ...), the last four of the
year (9.9, 10.10, 11.11, 12.12) being the mega sales, plus a payday sale on the 25th when salaries land.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from simulator.config import SimConfig

DAY_US = 86_400_000_000
EPOCH = date(1970, 1, 1)

# Day kinds index every per-kind parameter (`normal`, `campaign`, `mega`).
DAY_KINDS: tuple[str, ...] = ("normal", "campaign", "mega")
MEGA_MONTHS = (9, 10, 11, 12)


def campaign_of(day: date) -> tuple[str, bool] | None:
    """(campaign_name, is_mega_sale) of a day, or None on an ordinary day."""
    if day.month == day.day:
        return f"{day.month}.{day.day}", day.month in MEGA_MONTHS
    if day.day == 25:
        return "payday", False
    return None


def date_to_us(day: date) -> int:
    return (day - EPOCH).days * DAY_US


@dataclass(frozen=True)
class Days:
    dates: list[date]
    start_us: np.ndarray  # int64 microseconds of each day's 00:00 UTC
    kind: np.ndarray  # int8 index into DAY_KINDS
    weekend: np.ndarray  # bool
    campaign_names: list[str | None]

    @property
    def n(self) -> int:
        return len(self.dates)

    @property
    def end_us(self) -> int:
        """The exclusive end of the period: the landing zone is a snapshot taken at this instant."""
        return int(self.start_us[-1]) + DAY_US

    def kind_names(self) -> list[str]:
        return [DAY_KINDS[k] for k in self.kind]


def build_days(config: SimConfig) -> Days:
    dates = [config.start_date + timedelta(days=i) for i in range(config.spec.n_days)]
    kinds, names = [], []
    for day in dates:
        campaign = campaign_of(day)
        names.append(campaign[0] if campaign else None)
        kinds.append(0 if campaign is None else (2 if campaign[1] else 1))
    return Days(
        dates=dates,
        start_us=np.array([date_to_us(d) for d in dates], dtype=np.int64),
        kind=np.array(kinds, dtype=np.int8),
        weekend=np.array([d.weekday() >= 5 for d in dates]),
        campaign_names=names,
    )
