"""The experiment a service holds: its definition, a loaded model per arm, and how one request is served.

Built by the registry watcher beside the champion (serving/model_watcher.py) and swapped in with it in one
reference assignment, so a request sees one consistent experiment. Arms that resolve to the same version
share one loaded model; an arm pointing at the champion's version uses the champion's. An arm whose alias is
not set, or whose model cannot be loaded (files missing, another feature service than the one the service
reads), is served by the champion and flagged with the reason, in the answer and in the exposure log; a
failed arm is retried at every registry poll.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from time import perf_counter
from typing import Any

import numpy as np

from platform_common.feature_spec import FeatureSpec
from platform_common.settings import Settings
from serving.champion import LoadedModel
from serving.experiments.assignment import Assigner
from serving.experiments.exposure_log import ArmServed, Exposure
from serving.experiments.interleaving import coin_seed, team_draft
from serving.experiments.model import INTERLEAVED, Experiment, is_version
from serving.features.base import FeatureReader
from serving.ranking import Ranked, build_response, objective_with_boost, score_candidates
from serving.schemas import ExperimentInfo, RankRequest, RankResponse

log = logging.getLogger("shoprank.serving.experiments")


@dataclass(frozen=True)
class LoadedArm:
    name: str
    target: str
    model: LoadedModel  # the champion's when the arm fell back
    fallback: str | None = None


@dataclass(frozen=True)
class LiveExperiment:
    definition: Experiment
    arms: Mapping[str, LoadedArm]  # in the definition's order
    assigner: Assigner

    def same_as(self, other: LiveExperiment) -> bool:
        """Nothing a request could see differs: same definition, same model objects, same fallbacks."""
        return self.definition == other.definition and all(
            name in other.arms and arm.model is other.arms[name].model and arm.fallback == other.arms[name].fallback
            for name, arm in self.arms.items()
        )

    def status(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.definition.id,
            "design": self.definition.design,
            "running": self.definition.running(now),
            "arms": {a.name: {"version": a.model.version, "fallback": a.fallback} for a in self.arms.values()},
        }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def check_servable(version: str, spec: FeatureSpec | None, served: FeatureSpec | None) -> None:
    """An arm's model can be scored from what the service reads: its feature service's, or any whose columns are
    a subset of the champion's (a batch-only model beside a champion with the stream views: the service reads
    the champion's views, and each model picks its own columns by name from the request's vectors)."""
    if spec is None or served is None:
        raise ValueError(f"v{version} has no feature spec to check against the service's")
    if spec.feature_service == served.feature_service:
        return
    missing = sorted(set(spec.inputs) - set(served.inputs))
    if missing or not spec.columns:
        raise ValueError(
            f"v{version} reads feature service {spec.feature_service}, the service reads {served.feature_service}"
            + (f" and does not read {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}" if missing else "")
        )


def load_live(
    settings: Settings,
    definition: Experiment,
    aliases: Mapping[str, str],
    champion: LoadedModel,
    previous: LiveExperiment | None,
    load: Callable[[Settings, str], LoadedModel],
) -> LiveExperiment:
    """The loaded experiment; `previous` itself when nothing changed, so the watcher swaps nothing."""
    models: dict[str, LoadedModel] = {champion.version: champion}
    if previous is not None:  # loaded models are reused, never loaded twice
        for loaded in previous.arms.values():
            if loaded.fallback is None:
                models.setdefault(loaded.model.version, loaded.model)
    failures: dict[str, str] = {}
    arms: dict[str, LoadedArm] = {}
    served = champion.bundle.spec
    for arm in definition.arms:
        version = arm.target if is_version(arm.target) else aliases.get(arm.target)
        if version is None:
            arms[arm.name] = LoadedArm(arm.name, arm.target, champion, f"alias {arm.target!r} is not set")
            continue
        version = str(version)
        if version not in models and version not in failures:
            try:
                model = load(settings, version)
                check_servable(version, model.bundle.spec, served)
                models[version] = model
            except Exception as exc:  # the arm falls back to the champion; the reason is in every answer
                failures[version] = f"v{version} could not be loaded: {_first_line(exc)}"
        if version in failures:
            arms[arm.name] = LoadedArm(arm.name, arm.target, champion, failures[version])
        else:
            arms[arm.name] = LoadedArm(arm.name, arm.target, models[version])
    names = [a.name for a in definition.arms]
    fresh = LiveExperiment(definition, arms, Assigner(definition.salt, names, [a.share for a in definition.arms]))
    if previous is not None and fresh.same_as(previous):
        return previous
    for loaded in fresh.arms.values():  # once per change, not at every retry
        if loaded.fallback:
            log.warning("experiment %s arm %s served by the champion: %s", definition.id, loaded.name, loaded.fallback)
    return fresh


@dataclass
class Served:
    """One experiment answer and what the service records of it."""

    response: RankResponse
    exposure: Exposure
    trace: dict[str, Any]  # vectors and served scores (request order), timings: as serving.ranking.rank fills


def _served_arm(arm: LoadedArm, scores: dict[str, np.ndarray], ranked: Ranked) -> ArmServed:
    return ArmServed(arm.target, arm.model.name, arm.model.version, arm.fallback, scores, ranked.score)


def serve(
    live: LiveExperiment,
    request: RankRequest,
    reader: FeatureReader,
    now: datetime,
    is_campaign_day: bool,
) -> Served:
    """Rank `request` under the experiment: the user's arm (A/B) or both arms merged by team draft."""
    request_id = uuid.uuid4().hex
    definition = live.definition
    started = perf_counter()
    vectors = reader.fetch(request.user_id, request.product_ids, now=now)
    read = perf_counter()
    if definition.design == "ab":
        arm = live.arms[live.assigner.arm(request.user_id)]
        used = [arm]
    else:
        used = list(live.arms.values())
    by_model: dict[int, tuple[dict[str, np.ndarray], Ranked]] = {}
    for a in used:  # two arms on one model score once
        if id(a.model) not in by_model:
            scores = score_candidates(a.model, vectors, request.surface, now, is_campaign_day)
            by_model[id(a.model)] = (scores, objective_with_boost(request, scores, vectors))
    trace: dict[str, Any] = {"vectors": vectors, "read_seconds": read - started}
    if definition.design == "ab":
        scores, ranked = by_model[id(arm.model)]
        order: list[int] = np.argsort(-ranked.score, kind="stable").tolist()
        credit = [arm.name] * len(order)
        served_scores, served_ranked, request_arm = scores, ranked, arm.name
    else:
        first, second = used
        (scores_a, ranked_a), (scores_b, ranked_b) = by_model[id(first.model)], by_model[id(second.model)]
        order, teams = team_draft(
            np.argsort(-ranked_a.score, kind="stable").tolist(),
            np.argsort(-ranked_b.score, kind="stable").tolist(),
            coin_seed(definition.salt, request_id),
        )
        credit = [used[t].name for t in teams]
        # Each product carries the scores of the arm that placed it, so the answer and the request log show
        # what that arm's model said about it.
        from_b = np.zeros(len(order), dtype=bool)
        from_b[np.asarray(order)[np.asarray(teams, dtype=bool)]] = True
        served_scores = {k: np.where(from_b, scores_b[k], v) for k, v in scores_a.items()}
        served_ranked = Ranked(np.where(from_b, ranked_b.score, ranked_a.score), ranked_a.new_merchant)
        request_arm = INTERLEAVED
    trace.update(scores=served_scores, score_seconds=perf_counter() - read)
    response = build_response(
        request, used[0].model, vectors, served_scores, served_ranked, order, now, is_campaign_day
    )
    fallbacks = [f"{a.name}: {a.fallback}" for a in used if a.fallback]
    response.request_id = request_id
    response.experiment = ExperimentInfo(
        id=definition.id,
        design=definition.design,
        arm=request_arm,
        versions={a.name: a.model.version for a in used},
        credit=credit if definition.design == "interleaving" else None,
        fallback="; ".join(fallbacks) or None,
    )
    exposure = Exposure(
        request_id=request_id,
        served_at=now,
        experiment_id=definition.id,
        design=definition.design,
        user_id=request.user_id,
        surface=request.surface,
        objective=request.objective,
        new_merchant_boost=request.new_merchant_boost,
        arm=request_arm,
        product_ids=request.product_ids,
        order=order,
        credit=credit,
        arms={a.name: _served_arm(a, *by_model[id(a.model)]) for a in used},
    )
    return Served(response, exposure, trace)
