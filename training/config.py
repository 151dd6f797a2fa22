"""Training settings, frozen and validated before any data is read."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SplitConfig(BaseModel):
    """Time split of the label days: [warm-up | train | valid | test], oldest to newest.

    Warm-up days are dropped because rolling 30-day features are still filling up there; nothing from a
    later part may ever be used to fit an earlier one.
    """

    model_config = ConfigDict(frozen=True)

    warmup_frac: float = Field(0.15, ge=0, lt=1)
    valid_frac: float = Field(0.12, gt=0, lt=1)
    test_frac: float = Field(0.12, gt=0, lt=1)
    min_days: int = Field(2, ge=1, description="Smallest valid/test window in days.")


class XGBConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    # Shallow, slow and patient: conversions are rare (a few hundred per validation window), so a fast
    # learning rate with short patience stops the CVR head after a handful of trees (measured in
    # docs/benchmarks.md: GMV@10 87.4% -> 89.5% of the oracle at SCALE=small). Early stopping watches the
    # validation log loss, not AUC: AUC over a few hundred orders is noisy and stopped the CVR head at ~14
    # trees; log loss is also what calibration needs.
    max_depth: int = Field(4, ge=1, le=16)
    eta: float = Field(0.05, gt=0, le=1)
    subsample: float = Field(0.9, gt=0, le=1)
    colsample_bytree: float = Field(0.9, gt=0, le=1)
    min_child_weight: float = Field(20.0, ge=0)
    reg_lambda: float = Field(1.0, ge=0)
    num_boost_round: int = Field(1500, ge=1)
    early_stopping_rounds: int = Field(60, ge=1)
    nthread: int = Field(2, ge=1)
    seed: int = 7
    refit_on_valid: bool = Field(
        True,
        description="After early stopping, refit each head on train + valid days with its tree count scaled "
        "by the rows added: the newest days are the closest to serving, and the choices made on the validation "
        "days (trees, CVR method) are made before they are trained on.",
    )

    def booster_params(self, objective: str = "binary:logistic") -> dict[str, object]:
        return {
            "objective": objective,
            # Early stopping watches the log loss alone: an AUC per round sorts the whole validation set each time
            # (minutes at SCALE=large) and nothing reads it.
            "eval_metric": ["logloss"],
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.eta,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "nthread": self.nthread,
            "seed": self.seed,
        }


class TrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    feature_service: str = "ctr_model_v1"
    split: SplitConfig = SplitConfig()
    xgb: XGBConfig = XGBConfig()
    filter_by_created_timestamp: bool = True
    join_chunk_rows: int = Field(
        250_000,
        ge=1,
        description="Label rows per point-in-time join call (whole days): Feast's stock DuckDB store persists a "
        "join through memory (about 5 GB per million label rows at SCALE=small, issue 14), so this bounds what it "
        "holds at once; an offline store that streams its join to parquet can take far more per call.",
    )
    query_join_chunk_rows: int = Field(
        8_000_000,
        ge=1,
        description="Label rows per point-in-time join call when the offline store takes the entity rows as a "
        "DuckDB query (the project's ASOF store): each call reads every row of the marts once, so fewer, larger "
        "calls are faster (SCALE=large: 36 s for 250,000 label rows, 100 s for 8 million), and DuckDB's "
        "memory_limit bounds a call's memory whatever its size (4.4 GiB peak for 8 million).",
    )
    max_train_negatives: int = Field(
        1_000_000,
        ge=1,
        description="Non-clicked rows the all-impressions heads (CTR, CTCVR) learn from at most. Beyond it they "
        "learn from every clicked row and a fixed hash sample of the rest, each kept one weighted by 1 / the kept "
        "share, so the predictions stay calibrated (negative downsampling, as in He et al. 2014, 'Practical "
        "lessons from predicting clicks on ads at Facebook'). The validation rows early stopping watches are "
        "sampled alike; test rows, the CVR head's clicked rows and the choice of CVR method never are. "
        "SCALE=small has about 0.6M such training rows (untouched), SCALE=medium about 3M, SCALE=large about 13M. "
        "1M, not 2M: at SCALE=large it is what keeps `make train` under 30 minutes on two cores "
        "(docs/benchmarks.md, 'Training out of core'); `make train MAX_NEGATIVES=<n>` sets it per run.",
    )
    in_memory: bool = Field(
        False,
        description="Train from one pandas frame (Feast's to_df) instead of parquet batches: only to show both "
        "paths give the same model (tests, benchmarks/train.py); it needs memory for the whole training set.",
    )
