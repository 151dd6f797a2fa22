"""The /rank contract. Bounds are part of the API: they keep one request from starving the others."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from platform_common.feature_spec import SURFACES

MAX_CANDIDATES = 500
MAX_ID_LENGTH = 64

EntityId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, strip_whitespace=True)]
Surface = Literal[SURFACES]  # type: ignore[valid-type]


class RankRequest(BaseModel):
    """Rank candidate products for one user on one surface."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: EntityId
    product_ids: list[EntityId] = Field(min_length=1, max_length=MAX_CANDIDATES)
    surface: Surface = "home_feed"

    @field_validator("product_ids")
    @classmethod
    def no_duplicates(cls, ids: list[str]) -> list[str]:
        seen: set[str] = set()
        dupes = sorted({i for i in ids if i in seen or seen.add(i)})
        if dupes:
            raise ValueError(f"product_ids must be unique; repeated: {dupes[:5]}")
        return ids


class RankedProduct(BaseModel):
    product_id: str
    rank: int
    score: float
    pctr: float
    known_product: bool


class ModelInfo(BaseModel):
    name: str
    version: str


class RankResponse(BaseModel):
    user_id: str
    surface: str
    known_user: bool
    model: ModelInfo
    ranking: list[RankedProduct]
