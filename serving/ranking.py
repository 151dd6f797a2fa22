"""Score and order candidates: feature vectors in, ranked products out. No HTTP here."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from platform_common.feature_spec import SERVING_POSITION
from serving.champion import LoadedModel
from serving.online_features import FeatureVectors, OnlineFeatureReader
from serving.schemas import (
    NEW_MERCHANT_DAYS,
    ModelInfo,
    RankedProduct,
    RankRequest,
    RankResponse,
    RequestContext,
)


def context_columns(surface: str, n: int, now: datetime, is_campaign_day: bool) -> dict[str, list]:
    return {
        "surface": [surface] * n,
        "position": [SERVING_POSITION] * n,
        "hour_of_day": [now.hour] * n,
        "is_campaign_day": [int(is_campaign_day)] * n,
    }


def _column(vectors: FeatureVectors, name: str) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in vectors.columns[name]], dtype=float)


def score_candidates(
    model: LoadedModel, vectors: FeatureVectors, surface: str, now: datetime, is_campaign_day: bool
) -> dict[str, np.ndarray]:
    """pctr, pcvr, pctcvr and expected_gmv per candidate, in request order."""
    spec = model.bundle.spec
    assert spec is not None
    n = len(vectors.known_products)
    columns = {**vectors.columns, **context_columns(surface, n, now, is_campaign_day)}
    scores = model.bundle.score_matrix(spec.matrix(columns, n))
    scores["expected_gmv"] = model.bundle.expected_gmv(scores["pctcvr"], _column(vectors, "price"))
    return scores


def objective_score(scores: dict[str, np.ndarray], objective: str) -> np.ndarray:
    return {"ctr": scores["pctr"], "ctcvr": scores["pctcvr"], "gmv": scores["expected_gmv"]}[objective]


def rank(
    request: RankRequest,
    model: LoadedModel,
    reader: OnlineFeatureReader,
    now: datetime | None = None,
    is_campaign_day: bool = False,
) -> RankResponse:
    now = now or datetime.now(UTC)
    vectors = reader.fetch(request.user_id, request.product_ids, now=now)
    scores = score_candidates(model, vectors, request.surface, now, is_campaign_day)
    age = _column(vectors, "merchant_age_days")
    new_merchant = age < NEW_MERCHANT_DAYS  # NaN (unknown merchant) compares False: no boost on no evidence
    score = objective_score(scores, request.objective) * (1.0 + request.new_merchant_boost * new_merchant)
    order = np.argsort(-score, kind="stable")
    ranking = [
        RankedProduct(
            product_id=request.product_ids[i],
            rank=r + 1,
            score=float(score[i]),
            pctr=float(scores["pctr"][i]),
            pcvr=float(scores["pcvr"][i]),
            pctcvr=float(scores["pctcvr"][i]),
            expected_gmv=float(scores["expected_gmv"][i]),
            new_merchant=bool(new_merchant[i]),
            known_product=vectors.known_products[i],
        )
        for r, i in enumerate(order)
    ]
    return RankResponse(
        user_id=request.user_id,
        surface=request.surface,
        objective=request.objective,
        known_user=vectors.known_user,
        stale_features=vectors.stale,
        context=RequestContext(position=SERVING_POSITION, hour_of_day=now.hour, is_campaign_day=int(is_campaign_day)),
        model=ModelInfo(name=model.name, version=model.version),
        ranking=ranking,
    )
