"""BentoML service: `bentoml serve serving.service:Ranker`.

Loads the registry's champion and the Feast online store at start-up. If either is not there yet, the
service still starts, answers /readyz and /rank with 503 and the reason, and keeps retrying in the
background, so a deploy that races the first promotion heals itself.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import bentoml

from platform_common.feast_config import get_feature_store
from platform_common.settings import get_settings
from serving.calendar import load_campaign_days
from serving.champion import LoadedModel, load_champion
from serving.online_features import OnlineFeatureReader
from serving.ranking import rank
from serving.schemas import RankRequest

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
log = logging.getLogger("shoprank.serving")

RETRY_SECONDS = float(os.environ.get("SHOPRANK_LOAD_RETRY_SECONDS", "5"))


@bentoml.service(
    name="shoprank", workers=1, threads=int(os.environ.get("SHOPRANK_THREADS", "8")), traffic={"timeout": 10}
)
class Ranker:
    def __init__(self) -> None:
        self.settings = get_settings()
        self.model: LoadedModel | None = None
        self.reader: OnlineFeatureReader | None = None
        self.not_ready_reason = "starting"
        self.campaign_days: frozenset = frozenset()
        self._stop = threading.Event()
        if not self._load():
            threading.Thread(target=self._retry_load, name="champion-loader", daemon=True).start()

    def _load(self) -> bool:
        try:
            model = load_champion(self.settings)
            store = get_feature_store(self.settings)
            reader = OnlineFeatureReader(store, model.bundle.spec.feature_service)
            self.campaign_days = load_campaign_days(self.settings.marts_dir)
        except Exception as exc:  # any failure keeps the service up but not ready, with the reason
            self.not_ready_reason = f"{type(exc).__name__}: {exc}"
            log.warning("not ready: %s", self.not_ready_reason)
            return False
        self.model, self.reader = model, reader
        self.not_ready_reason = ""
        log.info("serving %s v%s", model.name, model.version)
        return True

    def _retry_load(self) -> None:
        while not self._stop.wait(RETRY_SECONDS):
            if self._load():
                return

    def __is_ready__(self) -> bool:
        return self.model is not None and self.reader is not None

    @bentoml.api(route="/rank", input_spec=RankRequest)
    def rank(self, ctx: bentoml.Context, **fields: Any) -> dict[str, Any]:
        """Rank candidate products for a user by expected GMV (or the requested objective)."""
        model, reader = self.model, self.reader
        if model is None or reader is None:
            ctx.response.status_code = HTTPStatus.SERVICE_UNAVAILABLE
            return {"error": f"model or feature store not loaded: {self.not_ready_reason}"}
        request = RankRequest.model_construct(**fields)
        now = datetime.now(UTC)
        return rank(request, model, reader, now=now, is_campaign_day=now.date() in self.campaign_days).model_dump()
