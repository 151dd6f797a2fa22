"""BentoML service: `bentoml serve serving.service:Ranker`.

Loads the registry's champion and the Feast online store at start-up and then follows the registry: a new
champion (or a rollback) is picked up within SHOPRANK_RELOAD_SECONDS without a restart and without failing a
request (serving/model_watcher.py). If nothing can be loaded yet, the service still starts, answers /readyz
and /rank with 503 and the reason, and keeps retrying in the background. With SHOPRANK_SHADOW=1 the
`challenger` is scored on live traffic too and both scores are logged, never returned. An online experiment
stored in the registry (`make experiment-start`; docs/experiments.md) is followed the same way: while it runs,
each answer comes from the user's arm (A/B) or both arms merged (team-draft interleaving), names the experiment
and arm, and is logged in full (serving/experiments/).

Every SHOPRANK_* serving variable is read and validated once, at import (serving/settings.py): a bad value
stops `bentoml serve` with one line naming it. Over capacity /rank answers 503 with `Retry-After` rather
than queueing (serving/guard.py, AdmissionControl).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from datetime import UTC, datetime
from http import HTTPStatus
from time import perf_counter
from typing import Any

import bentoml
from starlette.responses import Response

from merchant_growth import (
    DiagnoseRequest,
    ForecastRequest,
    MerchantGrowthError,
    diagnose_request,
    forecast_request,
    http_status,
)
from merchant_growth.plan_schemas import PlanRequest
from merchant_growth.planner import plan
from platform_common.feast_config import get_feature_store
from platform_common.settings import get_settings
from serving.calendar import load_campaign_days
from serving.champion import LoadedModel
from serving.experiments.exposure_log import ExposureLog, experiment_metrics
from serving.experiments.live import LiveExperiment, serve
from serving.features.base import FeatureReader, FeatureStoreUnavailable
from serving.features.factory import make_reader
from serving.guard import (
    AdmissionControl,
    QueueDelayControl,
    RequestGuard,
    late_reason,
    shed_body,
    waited_since_admission,
)
from serving.model_watcher import Active, RegistryWatcher
from serving.observability import count_shed, get_telemetry, http_tuning
from serving.ranking import rank, score_candidates
from serving.readiness import ReadinessMiddleware, set_status_provider
from serving.request_log import RequestLog
from serving.schemas import RankRequest
from serving.settings import serving_settings_or_exit

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
log = logging.getLogger("shoprank.serving")
shadow_log = logging.getLogger("shoprank.shadow")

SERVING = serving_settings_or_exit()  # once per process, before the service is declared; exits on a bad value
# One queue-delay state per worker, shared by admission (waits stamped upstream) and the handler (serving/guard.py).
QUEUE = QueueDelayControl(SERVING.queue_target_seconds, SERVING.queue_interval_seconds)


@bentoml.service(
    name="shoprank",
    # One worker per core: scoring is CPU-bound and a worker is one Python process (docs/benchmarks.md,
    # "Serving", tuning table). Workers may start on a fresh SHOPRANK_HOME: platform_common/registry.py serializes the
    # creation of MLflow's database.
    workers=SERVING.workers,
    threads=SERVING.threads,
    traffic={"timeout": 10},
    **http_tuning(SERVING),  # access log and /rank tracing off unless asked for (serving/observability.py)
)
class Ranker:
    def __init__(self) -> None:
        self.settings = get_settings()
        self.active: Active | None = None
        self.not_ready_reason = "starting"
        self.campaign_days: frozenset = frozenset()
        self.telemetry = get_telemetry()
        self.queue = QUEUE
        self.request_log = RequestLog(
            self.settings.logs_dir / "requests",
            rate=SERVING.request_log_rate,
            flush_seconds=SERVING.request_log_flush_seconds,
            on_rows=self.telemetry.log_rows_hook,
        )
        self.experiment_metrics = experiment_metrics()
        # Not sampled: every request served under an experiment (serving/experiments/exposure_log.py).
        self.exposure_log = ExposureLog(
            self.settings.logs_dir / "experiments",
            flush_seconds=SERVING.request_log_flush_seconds,
            on_rows=self.experiment_metrics.rows_hook,
        )
        if SERVING.shadow:
            self._setup_shadow_log()
        self.watcher = RegistryWatcher(
            self.settings,
            build_reader=self._build_reader,
            get_current=lambda: self.active,
            on_change=self._activate,
            on_error=self._not_ready,
            interval=SERVING.reload_seconds,
            retry_interval=SERVING.load_retry_seconds,
            shadow=SERVING.shadow,
        )
        self.watcher.poll()
        self.watcher.start()
        set_status_provider(self.status)

    def _build_reader(self, model: LoadedModel) -> FeatureReader:
        self.campaign_days = load_campaign_days(self.settings.marts_dir)
        previous = self.active.reader if self.active is not None else None
        spec = model.bundle.spec
        assert spec is not None  # load_version returns loaded bundles only
        return make_reader(
            lambda: get_feature_store(self.settings),
            spec.feature_service,
            mode=SERVING.feature_read,
            poll_seconds=SERVING.snapshot_poll_seconds,
            previous=previous,
        )

    def _activate(self, active: Active) -> None:
        self.active = active  # one reference assignment: a request sees the old or the new model, never a mix
        self.not_ready_reason = ""

    def _not_ready(self, reason: str) -> None:
        if self.active is None:
            self.not_ready_reason = reason

    def _setup_shadow_log(self) -> None:
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.settings.logs_dir / "shadow_scores.jsonl")
        handler.setFormatter(logging.Formatter("%(message)s"))
        shadow_log.addHandler(handler)
        shadow_log.setLevel(logging.INFO)
        shadow_log.propagate = False

    def status(self) -> tuple[int, dict[str, Any]]:
        active = self.active
        if active is None:
            return 503, {"ready": False, "reason": self.not_ready_reason}
        return 200, {
            "ready": True,
            "model": {"name": active.model.name, "version": active.model.version},
            "feature_service": active.model.bundle.spec.feature_service if active.model.bundle.spec else None,
            "shadow": {"name": active.shadow.name, "version": active.shadow.version} if active.shadow else None,
            "experiment": active.experiment.status(datetime.now(UTC)) if active.experiment else None,
            "registry_check_error": self.watcher.last_error or None,
        }

    def _shed_reason(self) -> tuple[str, str] | None:
        """Why this request is answered 503 instead of scored, if it is (serving/guard.py)."""
        waited = waited_since_admission()
        if waited is None:
            return None
        return late_reason(waited, perf_counter(), SERVING.queue_deadline_seconds, self.queue, "before scoring")

    def __is_ready__(self) -> bool:
        return self.active is not None

    @bentoml.api(route="/rank", input_spec=RankRequest)
    def rank(self, ctx: bentoml.Context, **fields: Any) -> dict[str, Any]:
        """Rank candidate products for a user by expected GMV (or the requested objective)."""
        started = perf_counter()
        active = self.active
        if active is None:
            ctx.response.status_code = HTTPStatus.SERVICE_UNAVAILABLE
            self.telemetry.failed("not_ready", perf_counter() - started)
            return {"error": f"model or feature store not loaded: {self.not_ready_reason}"}
        shed = self._shed_reason()
        if shed is not None:  # the answer would come too late to be of use: say so at once, and cheaply
            reason, detail = shed
            count_shed(reason)
            ctx.response.status_code = HTTPStatus.SERVICE_UNAVAILABLE
            ctx.response.headers["Retry-After"] = str(SERVING.retry_after_seconds)
            return shed_body(reason, detail)
        request = RankRequest.model_construct(**fields)
        now = datetime.now(UTC)
        campaign = now.date() in self.campaign_days
        live = active.experiment
        if live is not None and live.definition.running(now):  # without an experiment, this is all it costs
            return self._rank_experiment(ctx, active, live, request, now, campaign, started)
        trace: dict[str, Any] = {}
        try:
            response = rank(request, active.model, active.reader, now=now, is_campaign_day=campaign, trace=trace)
        except FeatureStoreUnavailable as exc:  # the store failed mid-request (direct and feast read modes)
            ctx.response.status_code = HTTPStatus.SERVICE_UNAVAILABLE
            self.telemetry.failed("store_unavailable", perf_counter() - started)
            return {"error": f"feature store unavailable: {exc}"}
        response.degraded = active.reader.degraded_reason() or None
        if active.shadow is not None:
            self._score_shadow(active, request, response, now, campaign)
        self.request_log.offer(request, response, trace)
        self.telemetry.served(active.model, active.reader, trace, perf_counter() - started)
        # Serialized by pydantic in one call (Rust), not dumped to a dict for BentoML to re-validate and encode.
        # The annotation stays dict: BentoML builds the OpenAPI schema from it; a Response passes through as is.
        return Response(response.model_dump_json(), media_type="application/json")  # type: ignore[return-value]

    def _rank_experiment(
        self,
        ctx: bentoml.Context,
        active: Active,
        live: LiveExperiment,
        request: RankRequest,
        now: datetime,
        campaign: bool,
        started: float,
    ) -> dict[str, Any]:
        """/rank under an experiment: the user's arm or both merged, named in the answer and logged in full.
        No shadow scoring here: the answer is not the champion's, so a champion/challenger pair would be wrong."""
        try:
            served = serve(live, request, active.reader, now, campaign)
        except FeatureStoreUnavailable as exc:
            ctx.response.status_code = HTTPStatus.SERVICE_UNAVAILABLE
            self.telemetry.failed("store_unavailable", perf_counter() - started)
            return {"error": f"feature store unavailable: {exc}"}
        response = served.response
        response.degraded = active.reader.degraded_reason() or None
        self.exposure_log.offer(replace(served.exposure, latency_ms=(perf_counter() - started) * 1000.0))
        self.experiment_metrics.requests.labels(live.definition.id, served.exposure.arm).inc()
        self.request_log.offer(request, response, served.trace)
        self.telemetry.served(active.model, active.reader, served.trace, perf_counter() - started)
        return Response(response.model_dump_json(), media_type="application/json")  # type: ignore[return-value]

    @bentoml.api(route="/merchant/diagnose", input_spec=DiagnoseRequest)
    def merchant_diagnose(self, ctx: bentoml.Context, **fields: Any) -> Any:
        """Why a merchant's GMV moved between two periods: exact funnel attribution, causes, model explanation."""
        request = DiagnoseRequest.model_construct(**fields)
        return self._merchant_call(ctx, lambda: diagnose_request(request, self.settings))

    @bentoml.api(route="/merchant/forecast", input_spec=ForecastRequest)
    def merchant_forecast(self, ctx: bentoml.Context, **fields: Any) -> Any:
        """Next-7-day GMV forecast of a merchant from the champion forecast model."""
        request = ForecastRequest.model_construct(**fields)
        return self._merchant_call(ctx, lambda: forecast_request(request, self.settings))

    @bentoml.api(route="/merchant/plan", input_spec=PlanRequest)
    def merchant_plan(self, ctx: bentoml.Context, **fields: Any) -> Any:
        """What-if GMV of a merchant on an upcoming campaign day under levers (issue 18): 400 on bad levers or an
        unknown campaign, 404 for an unknown merchant."""
        request = PlanRequest.model_validate(fields)  # validated by BentoML already; nested scenarios as models
        return self._merchant_call(ctx, lambda: plan(request, self.settings))

    def _merchant_call(self, ctx: bentoml.Context, call: Any) -> Any:
        try:
            result = call()
        except MerchantGrowthError as exc:  # unknown merchant 404, bad period 400, model not trained 503
            ctx.response.status_code = http_status(exc)
            return {"error": str(exc)}
        return Response(result.model_dump_json(), media_type="application/json")

    def _score_shadow(self, active: Active, request: RankRequest, response: Any, now: datetime, campaign: bool) -> None:
        try:
            vectors = active.reader.fetch(request.user_id, request.product_ids, now=now)
            assert active.shadow is not None  # the caller checked
            shadow = score_candidates(active.shadow, vectors, request.surface, now, campaign)
        except Exception as exc:  # the challenger must never hurt the answer
            log.warning("shadow scoring failed: %s", exc)
            return
        served = {p.product_id: p for p in response.ranking}
        shadow_log.info(
            json.dumps(
                {
                    "at": now.isoformat(),
                    "user_id": request.user_id,
                    "surface": request.surface,
                    "champion": active.model.version,
                    "challenger": active.shadow.version,
                    "scores": [
                        {
                            "product_id": pid,
                            "champion_pctr": served[pid].pctr,
                            "challenger_pctr": float(shadow["pctr"][i]),
                            "champion_expected_gmv": served[pid].expected_gmv,
                            "challenger_expected_gmv": float(shadow["expected_gmv"][i]),
                        }
                        for i, pid in enumerate(request.product_ids)
                    ],
                }
            )
        )


# @bentoml.service turns the class into a bentoml Service, which mypy sees as the class itself.
Ranker.add_asgi_middleware(ReadinessMiddleware)  # type: ignore[attr-defined]
Ranker.add_asgi_middleware(RequestGuard)  # type: ignore[attr-defined] # content type and body size of /rank (serving/guard.py)
# Inside the guard (BentoML nests them in this order): refused bodies never take a slot, and a shed answer can
# keep the connection because the guard has read the body.
Ranker.add_asgi_middleware(  # type: ignore[attr-defined]
    AdmissionControl,
    max_in_flight=SERVING.max_in_flight,
    retry_after_seconds=SERVING.retry_after_seconds,
    on_shed=count_shed,
    request_start_header=SERVING.request_start_header,
    deadline_seconds=SERVING.queue_deadline_seconds,
    queue=QUEUE,
)
