"""How raw feature values become the model's input matrix: one code path for training and serving.

The spec (ordered columns and categorical vocabularies) is learned at training time, stored inside the model
bundle and read back by the service, so a served model can never be fed columns in another order or with
other category codes than the ones it was trained on.

Derived numeric features (platform_common/category_stream.py: the candidate's category among the user's recent
clicks) are computed here, inside `matrix`, from their raw inputs, whichever caller builds the matrix: callers
supply `inputs` (the raw columns), never the derived values, so training and serving cannot compute them apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from platform_common import category_stream

SURFACES = ("home_feed", "short_video", "live_stream", "search")

# Request-time context: known to the caller, never read from the feature store.
CONTEXT_NUMERIC = ("position", "hour_of_day", "is_campaign_day")
CONTEXT_CATEGORICAL = ("surface",)

# The position a candidate is scored at when serving: ranking must not depend on a slot it has not got yet,
# so every candidate is scored as if shown first (a common position-debiasing choice).
SERVING_POSITION = 1


class FeatureSpec(BaseModel):
    """Ordered model inputs. Categorical columns are encoded as their index in `vocabularies` (unknown: NaN)."""

    model_config = ConfigDict(frozen=True)

    feature_service: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    vocabularies: dict[str, tuple[str, ...]]

    @property
    def columns(self) -> tuple[str, ...]:
        """The model's input columns, in matrix order."""
        return self.numeric + self.categorical

    @property
    def derived(self) -> tuple[str, ...]:
        """Numeric columns computed from other inputs (category_stream.DERIVED), never read from the data."""
        return tuple(c for c in self.numeric if c in category_stream.DERIVED)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The raw columns a matrix is built from: every column but the derived ones, then what those read."""
        raw = [c for c in self.columns if c not in category_stream.DERIVED]
        if self.derived:
            raw += [c for c in category_stream.INPUTS if c not in raw]
        return tuple(raw)

    def derive(
        self, columns: Mapping[str, Sequence[Any] | pd.Series | np.ndarray], n_rows: int
    ) -> dict[str, np.ndarray]:
        """The derived columns of this spec, from the raw `columns` (empty when it has none)."""
        return category_stream.derive(columns, n_rows, self.derived) if self.derived else {}

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        feature_service: str,
        numeric: Sequence[str],
        categorical: Sequence[str],
    ) -> FeatureSpec:
        vocab: dict[str, tuple[str, ...]] = {}
        for col in categorical:
            if col == "surface":
                vocab[col] = SURFACES
            else:
                vocab[col] = tuple(sorted(str(v) for v in frame[col].dropna().unique()))
        return cls(
            feature_service=feature_service,
            numeric=tuple(numeric),
            categorical=tuple(categorical),
            vocabularies=vocab,
        )

    def encode(self, column: str, values: Sequence[Any] | pd.Series) -> np.ndarray:
        index = {v: float(i) for i, v in enumerate(self.vocabularies[column])}
        return np.fromiter((index.get(v, np.nan) for v in values), dtype=np.float32, count=len(values))

    def matrix(self, columns: Mapping[str, Sequence[Any] | pd.Series | np.ndarray], n_rows: int) -> np.ndarray:
        """Dense float32 matrix in spec order; missing or null values become NaN (XGBoost's missing)."""
        out = np.empty((n_rows, len(self.columns)), dtype=np.float32)
        derived = self.derive(columns, n_rows)  # always from the inputs, even if `columns` has such a name
        for j, name in enumerate(self.numeric):
            if name in derived:
                out[:, j] = derived[name]
                continue
            out[:, j] = pd.to_numeric(pd.Series(columns[name]), errors="coerce").to_numpy(
                dtype=np.float32, na_value=np.nan
            )
        offset = len(self.numeric)
        for j, name in enumerate(self.categorical):
            out[:, offset + j] = self.encode(name, list(columns[name]))
        return out

    def frame_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        return self.matrix({c: frame[c] for c in self.inputs}, len(frame))
