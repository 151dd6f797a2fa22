"""The leakage guard: no honest model beats the simulator's true probabilities.

The oracle's p_click is the best possible score for every impression, so a model whose test AUC exceeds the
oracle's by more than sampling noise has seen information from the future. Noise is measured with a paired
bootstrap over test *requests* (impressions of one request share a user and a moment, so resampling rows
would understate the variance): the run fails if the lower end of the 95% interval of
(model AUC - oracle AUC) is above zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


def fast_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Mann-Whitney AUC with tied scores averaged (equal to sklearn's), without its input checks."""
    ranks = rankdata(p)
    pos = y == 1
    n_pos = int(pos.sum())
    n_neg = len(y) - n_pos
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class GuardResult:
    passed: bool
    auc_gap: float
    ci_low: float
    ci_high: float
    reason: str


class _SortedScores:
    """One score column sorted once, so the AUC of any reweighting of its rows (a bootstrap replicate: each row
    weighted by how often its request was drawn) is a few passes over the rows instead of a sort."""

    def __init__(self, p: np.ndarray) -> None:
        self.order = np.argsort(p, kind="stable")
        ranked = p[self.order]
        self.tie = np.concatenate([[0], np.cumsum(ranked[1:] != ranked[:-1])])  # equal scores share a group
        self.n_ties = int(self.tie[-1]) + 1 if len(p) else 0

    def auc(self, y: np.ndarray, w: np.ndarray) -> float:
        """Mann-Whitney AUC of the rows repeated w times, ties counted half: equal to fast_auc on the repeated
        rows (the sums are of integers, exact in float64 below 2**53)."""
        ys, ws = y[self.order], w[self.order]
        neg = np.bincount(self.tie, ws * (ys == 0), self.n_ties)
        pos = np.bincount(self.tie, ws * (ys == 1), self.n_ties)
        below = np.cumsum(neg) - neg
        return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def leakage_guard(
    y: np.ndarray,
    p_model: np.ndarray,
    p_oracle: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 200,
    seed: int = 0,
) -> GuardResult:
    y = np.asarray(y)
    gap = fast_auc(y, p_model) - fast_auc(y, p_oracle)
    _, group_idx = np.unique(groups, return_inverse=True)
    n_groups = int(group_idx.max()) + 1
    model, oracle = _SortedScores(np.asarray(p_model)), _SortedScores(np.asarray(p_oracle))
    pos_per_group = np.bincount(group_idx, y == 1, n_groups)
    rows_per_group = np.bincount(group_idx, None, n_groups)
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(n_boot):
        # a replicate draws requests with replacement: each row then counts as often as its request was drawn
        drawn = np.bincount(rng.integers(0, n_groups, n_groups), None, n_groups)
        n_pos = float(drawn @ pos_per_group)
        if n_pos == 0 or n_pos == float(drawn @ rows_per_group):
            continue
        w = drawn[group_idx].astype(np.float64)
        gaps.append(model.auc(y, w) - oracle.auc(y, w))
    low, high = (float(v) for v in np.percentile(gaps, [2.5, 97.5]))
    if low > 0:
        reason = (
            f"model AUC beats the oracle by {gap:+.4f} (95% CI {low:+.4f}..{high:+.4f}, paired bootstrap over "
            "requests): a feature carries information from after the label; refusing this run"
        )
        return GuardResult(False, gap, low, high, reason)
    return GuardResult(True, gap, low, high, f"model AUC - oracle AUC = {gap:+.4f} (95% CI {low:+.4f}..{high:+.4f})")
