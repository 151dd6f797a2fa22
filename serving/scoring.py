"""The model heads a request needs, and only those, with XGBoost's per-call checks done once.

`RankerBundle.score_matrix` runs all three XGBoost heads, but its CVR method reads two of them: `clicked_only`
(pCTCVR = pCTR x pCVR) never reads the `ctcvr` head, `ctcvr_over_ctr` (pCVR = pCTCVR / pCTR) never reads the
`cvr` head. An in-place prediction of 100 rows costs a few hundred microseconds, mostly fixed per call, so
skipping the unread head saves a third of the scoring time. The outputs go through the bundle's own
`combine`, so the scores are identical to `score_matrix` (tests/serving/test_fast_features.py checks it on
the served model).

`inplace_predict(validate_features=False)` skips XGBoost's per-call feature-count query; the count is checked
once per booster instead (the matrix always has the spec's columns, in the spec's order).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Heads `RankerBundle.combine` reads, per CVR method; a method not listed here gets every head.
HEADS_READ = {"clicked_only": ("ctr", "cvr"), "ctcvr_over_ctr": ("ctr", "ctcvr")}
_checked: set[int] = set()


def _check_width(bundle: Any, width: int) -> None:
    key = id(bundle)
    if key in _checked:
        return
    for head, booster in bundle.boosters.items():
        if booster.num_features() != width:
            raise ValueError(f"{head} head expects {booster.num_features()} features, the spec has {width}")
    _checked.add(key)


def score_matrix(bundle: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    heads = HEADS_READ.get(bundle.config.cvr_method)
    if heads is None or not set(HEADS_READ["clicked_only"]) | set(heads) <= set(bundle.boosters):
        return bundle.score_matrix(x)
    _check_width(bundle, x.shape[1])
    raw = {h: bundle.boosters[h].inplace_predict(x, validate_features=False).astype(np.float64) for h in heads}
    return bundle.combine(bundle.calibrate(raw, x))
