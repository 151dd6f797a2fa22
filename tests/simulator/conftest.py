"""One tiny simulation per test session, shared read-only by the data tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from simulator import SimConfig, Summary, generate

# 2026-10-31 .. 2026-11-20: the tiny period holds the 11.11 mega sale.
END_DATE = date(2026, 11, 21)


@dataclass(frozen=True)
class Run:
    home: Path
    summary: Summary
    config: SimConfig

    @property
    def raw(self) -> Path:
        return self.home / "raw"

    @property
    def oracle(self) -> Path:
        return self.home / "oracle"

    def table(self, name: str) -> pd.DataFrame:
        """A raw table with its hive `dt` partition column, timestamps as tz-aware pandas values."""
        dataset = ds.dataset(self.raw / name, format="parquet", partitioning="hive")
        return dataset.to_table().to_pandas()


def simulate(home: Path, **overrides: object) -> Run:
    config = SimConfig(
        **({"scale": "tiny", "seed": 42, "end_date": END_DATE, "home": home} | overrides)  # type: ignore[arg-type]
    )
    return Run(home=home, summary=generate(config), config=config)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Run:
    home = tmp_path_factory.mktemp("tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPRANK_HOME", str(home))
        return simulate(home)
