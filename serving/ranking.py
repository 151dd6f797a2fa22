"""Score and order candidates: feature vectors in, ranked products out. No HTTP here."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from platform_common.feature_spec import SERVING_POSITION
from serving.champion import LoadedModel
from serving.online_features import OnlineFeatureReader
from serving.schemas import ModelInfo, RankedProduct, RankRequest, RankResponse


def context_columns(surface: str, n: int, now: datetime, is_campaign_day: bool) -> dict[str, list]:
    return {
        "surface": [surface] * n,
        "position": [SERVING_POSITION] * n,
        "hour_of_day": [now.hour] * n,
        "is_campaign_day": [int(is_campaign_day)] * n,
    }


def rank(
    request: RankRequest,
    model: LoadedModel,
    reader: OnlineFeatureReader,
    now: datetime | None = None,
    is_campaign_day: bool = False,
) -> RankResponse:
    spec = model.bundle.spec
    assert spec is not None
    now = now or datetime.now(UTC)
    n = len(request.product_ids)
    vectors = reader.fetch(request.user_id, request.product_ids)
    columns = {**vectors.columns, **context_columns(request.surface, n, now, is_campaign_day)}
    scores = model.bundle.score_matrix(spec.matrix(columns, n))
    pctr = scores["pctr"].astype(float)
    order = np.argsort(-pctr, kind="stable")
    ranking = [
        RankedProduct(
            product_id=request.product_ids[i],
            rank=r + 1,
            score=float(pctr[i]),
            pctr=float(pctr[i]),
            known_product=vectors.known_products[i],
        )
        for r, i in enumerate(order)
    ]
    return RankResponse(
        user_id=request.user_id,
        surface=request.surface,
        known_user=vectors.known_user,
        model=ModelInfo(name=model.name, version=model.version),
        ranking=ranking,
    )
