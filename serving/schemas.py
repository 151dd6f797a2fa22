"""The /rank contract. Bounds are part of the API: they keep one request from starving the others."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from platform_common.feature_spec import SURFACES

MAX_CANDIDATES = 500
MAX_ID_LENGTH = 64
# A merchant younger than this many days counts as new for the exposure boost.
NEW_MERCHANT_DAYS = 30

EntityId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, strip_whitespace=True)]
Surface = Literal[SURFACES]  # type: ignore[valid-type]
# What the ranking maximises per impression: clicks, orders (click and buy), or expected GMV.
Objective = Literal["gmv", "ctcvr", "ctr"]


class RankRequest(BaseModel):
    """Rank candidate products for one user on one surface."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: EntityId
    product_ids: list[EntityId] = Field(min_length=1, max_length=MAX_CANDIDATES)
    surface: Surface = "home_feed"
    objective: Objective = "gmv"
    new_merchant_boost: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Multiplies the score of products from merchants younger than NEW_MERCHANT_DAYS by 1 + boost.",
    )

    @field_validator("product_ids")
    @classmethod
    def no_duplicates(cls, ids: list[str]) -> list[str]:
        counts = Counter(ids)
        dupes = sorted(i for i, n in counts.items() if n > 1)
        if dupes:
            raise ValueError(f"product_ids must be unique; repeated: {dupes[:5]}")
        return ids


class RankedProduct(BaseModel):
    product_id: str
    rank: int
    score: float
    pctr: float
    pcvr: float
    pctcvr: float
    expected_gmv: float
    new_merchant: bool
    known_product: bool


class ModelInfo(BaseModel):
    name: str
    version: str


class RequestContext(BaseModel):
    """The request-time context features the candidates were scored with (logged for parity checks)."""

    position: int
    hour_of_day: int
    is_campaign_day: int


class ExperimentInfo(BaseModel):
    """The online experiment an answer was served under (docs/experiments.md)."""

    id: str
    design: Literal["ab", "interleaving"]
    arm: str = Field(description="The user's arm (A/B); `interleaved` for an interleaving answer.")
    versions: dict[str, str] = Field(description="Per arm in this answer, the model version that ranked for it.")
    credit: list[str] | None = Field(
        None, description="Interleaving: per product of `ranking`, in order, the arm that contributed it."
    )
    fallback: str | None = Field(
        None, description="Set when an arm of this answer could not be loaded and the champion served it: why."
    )


class RankResponse(BaseModel):
    user_id: str
    surface: str
    objective: str
    known_user: bool
    stale_features: dict[str, int] = Field(
        default_factory=dict, description="Per feature view, candidate rows whose value was older than its TTL."
    )
    context: RequestContext
    model: ModelInfo
    ranking: list[RankedProduct]
    degraded: str | None = Field(
        None,
        description="Set, with the reason, when the answer came from a documented fallback: the last good "
        "snapshot of the online store while the store cannot be read (values older than their TTL still "
        "served as missing).",
    )
    request_id: str | None = Field(None, description="Set under an experiment: the key of its exposure log rows.")
    experiment: ExperimentInfo | None = Field(None, description="The experiment and arm, while one runs.")
