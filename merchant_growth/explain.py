"""Explain a merchant's traffic with the ranking model: SHAP contributions of its impressions, by feature group.

The champion ranker (`models:/<ranker>@champion`, a `training.bundle.RankerBundle`) scores impressions from
point-in-time features (Feast, the ranker's own feature service, exactly as in training). XGBoost's exact tree
SHAP (`booster.predict(dmatrix, pred_contribs=True)`) splits each impression's log-odds into one part per
feature plus a bias; summing the parts of the features of a group (price, discount, rating, ...) and averaging
over impressions gives the group's mean contribution. Means are additive, so the gaps between two sets of
impressions (the merchant vs peers of its category in period b; the merchant in period b vs period a) add up
over the groups to the gap of the mean log-odds: "their traffic is predicted to click 0.3 logit less than their
peers', 0.2 of it from price".

The CTR head is explained on all impressions; a CVR head, when the bundle has one, on clicked impressions (the
rows it was trained on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from merchant_growth.data import mart_path, query
from merchant_growth.schemas import GroupContribution, ModelExplanation, Period
from platform_common.registry import CHAMPION, load_bundle
from platform_common.settings import Settings
from training.bundle import RankerBundle

ENTITY_COLUMNS = ("impression_id", "event_timestamp", "user_id", "product_id", "merchant_id", "category_l1")

# Exact names first, then prefixes; anything else is "other". Robust to features added later.
GROUP_EXACT = {
    "price": "price",
    "price_rel_category": "price",
    "discount_pct": "discount",
    "merchant_rating": "rating",
    "merchant_is_live": "live",
    "country": "user_mix",
    "device": "user_mix",
    "position": "context",
    "hour_of_day": "context",
    "is_campaign_day": "context",
    "surface": "context",
}
GROUP_PREFIXES = (
    ("user_", "user_mix"),
    ("uc_", "user_mix"),
    ("product_", "product_quality"),
    ("merchant_", "product_quality"),
)
GROUP_ORDER = ("price", "discount", "rating", "live", "product_quality", "user_mix", "context", "other")
MIN_CLICKED_ROWS = 10


def feature_group(name: str) -> str:
    if name in GROUP_EXACT:
        return GROUP_EXACT[name]
    for prefix, group in GROUP_PREFIXES:
        if name.startswith(prefix):
            return group
    return "other"


@dataclass(frozen=True)
class Ranker:
    name: str
    version: str
    bundle: RankerBundle  # .spec (FeatureSpec) and .boosters {"ctr": Booster, ["cvr": ...]}


def load_ranker(settings: Settings) -> Ranker:
    try:
        loaded = load_bundle(settings, settings.model_name, CHAMPION, RankerBundle)
    except LookupError as exc:
        raise LookupError(f"{exc}: run `make train promote`") from exc
    if loaded.bundle.spec is None or "ctr" not in loaded.bundle.boosters:
        raise TypeError(f"{settings.model_name} v{loaded.version} is not a ranker bundle with a ctr head")
    return Ranker(settings.model_name, loaded.version, loaded.bundle)


def sample_impressions(
    settings: Settings, merchant_ids: list[str], period: Period, max_rows: int, seed: int = 0
) -> pd.DataFrame:
    """Up to max_rows impressions of the given merchants in the period (a reproducible random sample)."""
    path = mart_path(settings, "impression_labels")
    context = "position, hour_of_day, is_campaign_day, surface, clicked"
    frame = query(
        f"select {', '.join(ENTITY_COLUMNS)}, {context} from read_parquet('{path}') "
        "where feature_date between ? and ? and list_contains(?, merchant_id) order by impression_id",
        [period.start, period.end, merchant_ids],
    )
    if len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed).sort_values("impression_id")
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame.reset_index(drop=True)


def point_in_time_features(store: Any, rows: pd.DataFrame, feature_service: str) -> pd.DataFrame:
    """Feast's point-in-time join for the ranker's feature service, in the rows' order."""
    if rows.empty:
        return rows
    job = store.get_historical_features(
        entity_df=rows, features=store.get_feature_service(feature_service), full_feature_names=False
    )
    frame = job.to_df()
    return frame.set_index("impression_id").loc[rows["impression_id"]].reset_index()


def group_contributions(ranker: Ranker, head: str, frame: pd.DataFrame) -> tuple[dict[str, float], float]:
    """Mean SHAP contribution per group (log-odds) and the mean predicted probability over the rows."""
    spec = ranker.bundle.spec
    assert spec is not None  # load_bundle returns loaded bundles only
    booster: xgb.Booster = ranker.bundle.boosters[head]
    dmatrix = xgb.DMatrix(spec.frame_matrix(frame), feature_names=list(spec.columns))
    contribs = booster.predict(dmatrix, pred_contribs=True)  # (n, n_features + 1): last column is the bias
    means = contribs.mean(axis=0)
    groups = dict.fromkeys(GROUP_ORDER, 0.0)
    for name, value in zip(spec.columns, means[:-1], strict=True):
        groups[feature_group(name)] += float(value)
    groups["bias"] = float(means[-1])
    margin = contribs.sum(axis=1)
    return groups, float(np.mean(1.0 / (1.0 + np.exp(-margin))))


def _compare(
    ranker: Ranker,
    head: str,
    comparison: str,
    merchant: pd.DataFrame,
    reference: pd.DataFrame,
    describe: Callable[[list[GroupContribution], float, float], str],
) -> ModelExplanation:
    mine, p_mine = group_contributions(ranker, head, merchant)
    ref, p_ref = group_contributions(ranker, head, reference)
    groups = [
        GroupContribution(group=g, merchant=mine[g], reference=ref[g], gap=mine[g] - ref[g])
        for g in GROUP_ORDER
        if mine[g] != 0.0 or ref[g] != 0.0
    ]
    groups.sort(key=lambda g: -abs(g.gap))
    return ModelExplanation(
        head=head,
        model_name=ranker.name,
        model_version=ranker.version,
        comparison=comparison,
        rows_merchant=len(merchant),
        rows_reference=len(reference),
        mean_score_merchant=p_mine,
        mean_score_reference=p_ref,
        groups=groups,
        summary=describe(groups, p_mine, p_ref),
    )


def _describe(head: str, who: str, against: str) -> Callable[[list[GroupContribution], float, float], str]:
    def text(groups: list[GroupContribution], p_mine: float, p_ref: float) -> str:
        total = sum(g.gap for g in groups)
        direction = "higher" if total >= 0 else "lower"
        top = [g for g in groups if abs(g.gap) >= 0.02][:3]
        parts = ", ".join(f"{g.group} {g.gap:+.2f}" for g in top) or "no group above 0.02"
        return (
            f"The ranking model's {head.upper()} for {who} is {p_mine:.2%} vs {p_ref:.2%} for {against} "
            f"({total:+.2f} logit, {direction}); largest feature-group gaps: {parts}."
        )

    return text


def explain_merchant(
    settings: Settings,
    store: Any,
    merchant_id: str,
    peers: list[str],
    period_a: Period,
    period_b: Period,
    max_rows: int,
) -> tuple[list[ModelExplanation], list[str]]:
    """SHAP explanations of the merchant's impressions: vs its category peers (period b), and b vs a."""
    notes: list[str] = []
    ranker = load_ranker(settings)
    assert ranker.bundle.spec is not None
    service = ranker.bundle.spec.feature_service
    own_b = sample_impressions(settings, [merchant_id], period_b, max_rows)
    own_a = sample_impressions(settings, [merchant_id], period_a, max_rows)
    peer_b = sample_impressions(settings, peers, period_b, max_rows) if peers else own_b.iloc[:0]
    if own_b.empty:
        return [], [f"the merchant has no impressions in period b ({period_b}): nothing for the model to explain"]
    everything = pd.concat([own_b, own_a, peer_b], ignore_index=True).drop_duplicates("impression_id")
    features = point_in_time_features(store, everything, service).set_index("impression_id")

    def rows_of(frame: pd.DataFrame) -> pd.DataFrame:
        return features.loc[frame["impression_id"]].reset_index()

    out: list[ModelExplanation] = []
    for head in ("ctr", "cvr"):
        if head not in ranker.bundle.boosters:
            continue
        sets = {"own_b": rows_of(own_b), "own_a": rows_of(own_a), "peer_b": rows_of(peer_b)}
        if head == "cvr":
            clicked = {k: v[v["clicked"] == 1] for k, v in sets.items()}
            if min(len(clicked["own_b"]), len(clicked["peer_b"])) >= MIN_CLICKED_ROWS:
                sets = clicked
            else:
                notes.append("CVR head explained on all impressions: too few clicked ones in period b")
        if not sets["peer_b"].empty:
            out.append(
                _compare(
                    ranker,
                    head,
                    "merchant_vs_peers",
                    sets["own_b"],
                    sets["peer_b"],
                    _describe(head, f"{merchant_id}'s impressions", "its category peers' (period b)"),
                )
            )
        if not sets["own_a"].empty:
            out.append(
                _compare(
                    ranker,
                    head,
                    "period_b_vs_period_a",
                    sets["own_b"],
                    sets["own_a"],
                    _describe(head, f"{merchant_id} in period b", "period a"),
                )
            )
    return out, notes
