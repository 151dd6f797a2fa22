"""The simulator's true probabilities, read only to evaluate: the ceiling no honest model can beat.

Nothing in feature_repo/ or transforms/ may read the oracle; this module is the single door to it.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from platform_common.settings import Settings


def load_truth(settings: Settings, impression_ids: pd.Series) -> pd.DataFrame:
    """True p_click, p_order_given_click and expected order value for the given impressions, in their order."""
    path = settings.oracle_dir / "impression_truth.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the oracle comes from `make data`")
    ids = pd.DataFrame({"impression_id": impression_ids.to_numpy(), "_row": range(len(impression_ids))})
    with duckdb.connect() as con:
        con.register("ids", ids)
        truth = con.execute(
            "select ids._row, t.* exclude (impression_id) from ids "
            "left join read_parquet(?) t using (impression_id) order by ids._row",
            [str(path)],
        ).df()
    if truth["p_click"].isna().any():
        missing = int(truth["p_click"].isna().sum())
        raise ValueError(f"{missing} test impressions have no oracle row: the oracle and the marts disagree")
    return truth.drop(columns="_row")
