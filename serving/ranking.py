"""Score and order candidates: feature vectors in, ranked products out. No HTTP here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, NamedTuple

import numpy as np

from platform_common.feature_spec import SERVING_POSITION
from serving.champion import LoadedModel
from serving.features.base import FeatureReader, FeatureVectors
from serving.schemas import (
    NEW_MERCHANT_DAYS,
    RankRequest,
    RankResponse,
)
from serving.scoring import score_matrix


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
    x = vectors.model_matrix(spec, context_columns(surface, n, now, is_campaign_day), n)
    scores = score_matrix(model.bundle, x)
    scores["expected_gmv"] = model.bundle.expected_gmv(scores["pctcvr"], _column(vectors, "price"), x)
    return scores


def objective_score(scores: dict[str, np.ndarray], objective: str) -> np.ndarray:
    return {"ctr": scores["pctr"], "ctcvr": scores["pctcvr"], "gmv": scores["expected_gmv"]}[objective]


class Ranked(NamedTuple):
    score: np.ndarray
    new_merchant: np.ndarray


def objective_with_boost(request: RankRequest, scores: dict[str, np.ndarray], vectors: FeatureVectors) -> Ranked:
    """Each candidate's objective score (boost included) and its new-merchant flag, in request order."""
    age = _column(vectors, "merchant_age_days")
    new_merchant = age < NEW_MERCHANT_DAYS  # NaN (unknown merchant) compares False: no boost on no evidence
    score = objective_score(scores, request.objective) * (1.0 + request.new_merchant_boost * new_merchant)
    return Ranked(score, new_merchant)


def rank(
    request: RankRequest,
    model: LoadedModel,
    reader: FeatureReader,
    now: datetime | None = None,
    is_campaign_day: bool = False,
    trace: dict[str, Any] | None = None,
) -> RankResponse:
    """`trace`, if given, receives what was served (vectors, scores) and where the time went (seconds)."""
    now = now or datetime.now(UTC)
    started = perf_counter()
    vectors = reader.fetch(request.user_id, request.product_ids, now=now)
    read = perf_counter()
    scores = score_candidates(model, vectors, request.surface, now, is_campaign_day)
    if trace is not None:
        trace.update(vectors=vectors, scores=scores, read_seconds=read - started, score_seconds=perf_counter() - read)
    ranked = objective_with_boost(request, scores, vectors)
    order = np.argsort(-ranked.score, kind="stable")
    return build_response(request, model, vectors, scores, ranked, order, now, is_campaign_day)


def build_response(
    request: RankRequest,
    model: LoadedModel,
    vectors: FeatureVectors,
    scores: dict[str, np.ndarray],
    ranked: Ranked,
    order: np.ndarray | Sequence[int],
    now: datetime,
    is_campaign_day: bool,
) -> RankResponse:
    """The answer: candidates in `order` (indices into the request), with their scores (request order)."""
    # Plain Python values once per column (tolist), and the whole answer validated in one pydantic-core call:
    # 100 ranked products in about a quarter of a millisecond (a model object per product costs 2-4x that).
    ids, known = request.product_ids, vectors.known_products
    s, ctr, cvr, ctcvr = (
        ranked.score.tolist(),
        scores["pctr"].tolist(),
        scores["pcvr"].tolist(),
        scores["pctcvr"].tolist(),
    )
    gmv, new = scores["expected_gmv"].tolist(), ranked.new_merchant.tolist()
    ranking = [
        {
            "product_id": ids[i],
            "rank": r + 1,
            "score": s[i],
            "pctr": ctr[i],
            "pcvr": cvr[i],
            "pctcvr": ctcvr[i],
            "expected_gmv": gmv[i],
            "new_merchant": new[i],
            "known_product": known[i],
        }
        for r, i in enumerate(order.tolist() if isinstance(order, np.ndarray) else order)
    ]
    return RankResponse.model_validate(
        {
            "user_id": request.user_id,
            "surface": request.surface,
            "objective": request.objective,
            "known_user": vectors.known_user,
            "stale_features": vectors.stale,
            "context": {"position": SERVING_POSITION, "hour_of_day": now.hour, "is_campaign_day": int(is_campaign_day)},
            "model": {"name": model.name, "version": model.version},
            "ranking": ranking,
        }
    )
