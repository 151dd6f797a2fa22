"""The simulator's true probabilities, read only to evaluate: the ceiling no honest model can beat.

Nothing in feature_repo/ or transforms/ may read the oracle; this module is the single door to it.
"""

from __future__ import annotations

import json

import duckdb
import numpy as np
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


def examination_eta(settings: Settings) -> dict[str, float]:
    """Position-bias exponents per surface: examination probability at slot k is k ** -eta."""
    params = json.loads((settings.oracle_dir / "generative_params.json").read_text())
    return {str(k): float(v) for k, v in params["params"]["clicks"]["examination_eta"].items()}


def top_slot_value(truth: pd.DataFrame, surface: pd.Series, position: pd.Series, eta: dict[str, float]) -> np.ndarray:
    """True expected GMV of showing each product in the first slot: the value an ideal ranker sorts by."""
    exam = np.power(position.to_numpy(dtype=float), -surface.map(eta).to_numpy(dtype=float))
    p_click_top = truth["p_click"].to_numpy() / exam
    return p_click_top * truth["p_order_given_click"].to_numpy() * truth["expected_order_value"].to_numpy()
