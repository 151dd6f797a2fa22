"""The reader contract every read mode meets, the value it returns and the constants the modes share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from platform_common.feature_spec import FeatureSpec

READ_MODES = ("snapshot", "direct", "feast")
DEFAULT_READ_MODE = "snapshot"
DEFAULT_POLL_SECONDS = 5.0
UNKNOWN_KEY = "__unknown__"  # the routing key of a product with no row: matches no category or merchant


class FeatureStoreUnavailable(RuntimeError):
    """The online store (or its registry) cannot be read now: the service answers 503 with this reason."""


@dataclass(frozen=True)
class FeatureVectors:
    columns: dict[str, Sequence[Any] | np.ndarray]  # lists (feast mode) or numpy arrays (snapshot, direct)
    known_user: bool
    known_products: list[bool]
    stale: dict[str, int] = field(default_factory=dict)  # view -> rows older than its TTL, served as missing

    def model_matrix(self, spec: FeatureSpec, context: Mapping[str, Sequence[Any]], n_rows: int) -> np.ndarray:
        """The model's input matrix: these features plus the request context, in spec order."""
        return spec.matrix({**self.columns, **context}, n_rows)


class FeatureReader(Protocol):
    """What the service asks of an online feature reader, whatever its read mode."""

    @property
    def mode(self) -> str:
        """The read mode this reader implements (snapshot, direct or feast)."""
        ...

    @property
    def requested_mode(self) -> str:
        """The mode it was built for: `snapshot` falls back to a direct reader on stores it cannot snapshot."""
        ...

    @property
    def feature_service(self) -> str: ...

    @property
    def features(self) -> Mapping[str, Sequence[str]]:
        """Per feature view, the features the service reads."""
        ...

    def fetch(self, user_id: str, product_ids: Sequence[str], now: datetime | None = None) -> FeatureVectors:
        """The features of one request, in candidate order; values older than their view's TTL at `now` are
        served as missing and counted in `stale`. Raises FeatureStoreUnavailable if the store cannot answer."""
        ...

    def degraded_reason(self) -> str:
        """Why the answers come from a last good copy instead of the store ("" when they do not)."""
        ...

    def close(self) -> None: ...
