"""Champion/challenger promotion that a team can trust.

The candidate (newest version, or the one named) becomes `challenger`. It must pass integrity checks (the
leakage guard, a training-data fingerprint, a feature service that still matches the Feast registry, the
signature the service expects) and then beat the `champion` on the same frozen test rows by the policy's
thresholds. Only then does `champion` move, with `previous_champion` kept for rollback. Every decision is
recorded as tags on the candidate and as an event in the append-only history (training/audit.py). All alias
moves happen inside `platform_common.registry.move_aliases`, under the registry's promotion lock, so two
promotions at once (of the ranker or of the merchant forecast) cannot leave the aliases half-moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, ConfigDict, Field

from platform_common.feature_spec import CONTEXT_CATEGORICAL, CONTEXT_NUMERIC
from platform_common.registry import (
    CHALLENGER,
    CHAMPION,
    connect,
    load_bundle,
    move_aliases,
    version_by_alias,
)
from platform_common.settings import Settings, get_settings
from training import audit, evaluation, oracle
from training.baseline import BASELINE_TAG
from training.bundle import RankerBundle
from training.metrics import binary_metrics
from training.online_gate import ONLINE_METRIC, OnlineRule, describe_lift, load_evidence, online_checks, online_figures

PREVIOUS_CHAMPION = "previous_champion"
SERVED_OUTPUTS = frozenset({"pctr", "pcvr", "pctcvr"})


class PromotionPolicy(BaseModel):
    """Thresholds of the gate; each is printed beside the numbers it judged."""

    model_config = ConfigDict(frozen=True)

    min_auc_gain: float = Field(0.0, description="CTR AUC the candidate must gain over the champion.")
    max_logloss_regression: float = Field(0.0005, ge=0, description="CTR and CVR log loss may worsen by at most.")
    max_ece_regression: float = Field(0.005, ge=0, description="CTR and CVR calibration error may worsen by at most.")
    max_gmv_regression: float = Field(0.01, ge=0, description="Relative GMV@10 drop allowed (when the oracle exists).")


@dataclass(frozen=True)
class Decision:
    promoted: bool
    candidate: str
    champion_before: str | None
    reason: str
    forced: bool = False
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # (check, passed, detail)


class PromotionError(RuntimeError):
    """Promotion could not run (no registry, no versions, unreadable test set): nothing was changed."""


def newest_candidate(client: MlflowClient, name: str) -> ModelVersion | None:
    """The newest registered version that is not a baseline (training/baseline.py: for experiments only)."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    trained = [v for v in versions if BASELINE_TAG not in (v.tags or {})]
    return max(trained, key=lambda v: int(v.version), default=None)


def load_ranker(settings: Settings, version: str) -> RankerBundle:
    return load_bundle(settings, settings.model_name, version, RankerBundle).bundle


def score_on(bundle: RankerBundle, rows: pd.DataFrame, settings: Settings | None = None) -> dict[str, float]:
    """Gate metrics of one bundle on the frozen rows: CTR and CVR quality, and GMV@10 when the oracle exists."""
    assert bundle.spec is not None
    missing = [c for c in bundle.spec.inputs if c not in rows.columns]
    if missing:
        raise ValueError(f"the frozen test rows lack columns the model needs: {missing}")
    scores = bundle.score_matrix(bundle.spec.frame_matrix(rows))
    y_click = rows["clicked"].to_numpy()
    out = binary_metrics(y_click, scores["pctr"], "ctr")
    if "pcvr" in scores:
        clicked = y_click == 1
        out |= binary_metrics(rows["converted"].to_numpy()[clicked], scores["pcvr"][clicked], "cvr")
    if settings is not None and (settings.oracle_dir / "impression_truth.parquet").exists() and "pcvr" in scores:
        truth = oracle.load_truth(settings, rows["impression_id"])
        eta = oracle.examination_eta(settings)
        value = oracle.top_slot_value(truth, rows["surface"], rows["position"], eta)
        ranking = evaluation.ranking_metrics(evaluation.score(bundle, rows, truth, value), eta)
        out["gmv_at_10"] = ranking["gmv_at_10_model"]
    return out


def integrity_checks(settings: Settings, mv: ModelVersion, bundle: RankerBundle) -> list[tuple[str, bool, str]]:
    checks: list[tuple[str, bool, str]] = []
    guard = mv.tags.get("leakage_guard")
    checks.append(("leakage guard", guard == "passed", mv.tags.get("leakage_guard_reason", "guard did not run")))
    fp = mv.tags.get("data_fingerprint")
    checks.append(("training data fingerprint", bool(fp), fp or "missing: the training data cannot be traced"))
    checks.append(feature_service_check(settings, bundle))
    checks.append(signature_check(settings, mv, bundle))
    return checks


def feature_service_check(settings: Settings, bundle: RankerBundle) -> tuple[str, bool, str]:
    from platform_common.feast_config import get_feature_store
    from training.dataset import feature_columns

    assert bundle.spec is not None
    name = bundle.spec.feature_service
    try:
        registry = feature_columns(get_feature_store(settings), name)
    except Exception as exc:  # FeatureServiceNotFound, unreadable registry: either way the model cannot be fed
        return ("feature service matches Feast", False, f"{name}: {type(exc).__name__}: {exc}")
    wrong_numeric = set(bundle.spec.numeric) - set(registry.numeric) - set(CONTEXT_NUMERIC)
    wrong_cat = set(bundle.spec.categorical) - set(registry.categorical) - set(CONTEXT_CATEGORICAL)
    if wrong_numeric or wrong_cat:
        return (
            "feature service matches Feast",
            False,
            f"{name} in the registry no longer provides {sorted(wrong_numeric | wrong_cat)}",
        )
    return ("feature service matches Feast", True, f"{name}: all {len(bundle.spec.columns)} inputs available")


def signature_check(settings: Settings, mv: ModelVersion, bundle: RankerBundle) -> tuple[str, bool, str]:
    assert bundle.spec is not None
    try:
        signature = mlflow.models.get_model_info(f"models:/{settings.model_name}/{mv.version}").signature
    except MlflowException as exc:
        return ("signature", False, f"unreadable: {exc}")
    if signature is None:
        return ("signature", False, "no signature logged")
    inputs = signature.inputs.to_dict()
    outputs = {c["name"] for c in signature.outputs.to_dict()}
    problems = []
    if [c["name"] for c in inputs] != list(bundle.spec.inputs):
        problems.append("inputs differ from the feature spec")
    if any(c.get("required", True) for c in inputs):
        problems.append("some inputs are required (any feature can be missing when serving)")
    if not outputs >= SERVED_OUTPUTS:
        problems.append(f"outputs lack {sorted(SERVED_OUTPUTS - outputs)}")
    return (
        "signature",
        not problems,
        "; ".join(problems) or f"{len(inputs)} optional inputs, outputs {sorted(outputs)}",
    )


def gate(policy: PromotionPolicy, cand: dict[str, float], champ: dict[str, float]) -> list[tuple[str, bool, str]]:
    checks = []
    gain = cand["ctr_auc"] - champ["ctr_auc"]
    checks.append(("CTR AUC gain", gain > policy.min_auc_gain, f"{gain:+.4f} (needs > {policy.min_auc_gain:+.4f})"))
    for head in ("ctr", "cvr"):
        if f"{head}_logloss" not in cand or f"{head}_logloss" not in champ:
            continue
        d = cand[f"{head}_logloss"] - champ[f"{head}_logloss"]
        checks.append(
            (
                f"{head.upper()} log loss",
                d <= policy.max_logloss_regression,
                f"{d:+.5f} (at most +{policy.max_logloss_regression:.5f})",
            )
        )
        d = cand[f"{head}_ece"] - champ[f"{head}_ece"]
        checks.append(
            (
                f"{head.upper()} calibration",
                d <= policy.max_ece_regression,
                f"{d:+.4f} (at most +{policy.max_ece_regression:.4f})",
            )
        )
    if "gmv_at_10" in cand and "gmv_at_10" in champ:
        rel = cand["gmv_at_10"] / champ["gmv_at_10"] - 1
        checks.append(
            ("GMV@10", rel >= -policy.max_gmv_regression, f"{rel:+.2%} (at least -{policy.max_gmv_regression:.2%})")
        )
    return checks


def _tag(client: MlflowClient, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def promote(
    settings: Settings | None = None,
    policy: PromotionPolicy | None = None,
    version: str | None = None,
    force: bool = False,
    experiment: str | None = None,
    online_rule: OnlineRule = OnlineRule.SUPERIOR,
) -> Decision:
    """Gate a version against the champion; with `experiment`, on that experiment's online evidence too."""
    settings = settings or get_settings()
    policy = policy or PromotionPolicy()
    client = connect(settings)
    name = settings.model_name
    # read before anything moves: an unknown experiment or an unreadable summary changes nothing (EvidenceError)
    evidence = load_evidence(settings, client, experiment) if experiment else None
    with move_aliases(settings, name) as aliases:
        candidate = client.get_model_version(name, version) if version else newest_candidate(client, name)
        if candidate is None:
            raise PromotionError(f"no version of {name} is registered: run `make train` first")
        champion = version_by_alias(client, name, CHAMPION)
        # MLflow returns versions as str or int depending on the call; compare and record them as str.
        cand_v, champ_v = str(candidate.version), (str(champion.version) if champion else None)
        if champion is not None and champ_v == cand_v:
            return Decision(False, cand_v, champ_v, f"v{cand_v} is already champion")
        aliases.set(CHALLENGER, cand_v)

        cand_bundle = load_ranker(settings, cand_v)
        checks = integrity_checks(settings, candidate, cand_bundle)
        cand_m: dict[str, float] = {}
        champ_m: dict[str, float] = {}
        test_path = candidate.tags.get("test_set_path")
        if not test_path:
            checks.append(("frozen test set", False, "tag test_set_path missing"))
        else:
            try:
                rows = pd.read_parquet(test_path)
            except (OSError, ValueError) as exc:
                raise PromotionError(f"cannot read the frozen test set {test_path}: {exc}") from exc
            cand_m = score_on(cand_bundle, rows, settings)
            if champion is not None:
                champ_m = score_on(load_ranker(settings, str(champion.version)), rows, settings)
                checks += gate(policy, cand_m, champ_m)
        online: dict[str, object] = {}
        if evidence is not None:
            checks += online_checks(evidence, cand_v, champ_v, online_rule)
            online = online_figures(evidence, online_rule)

        failed = [f"{c}: {d}" for c, ok, d in checks if not ok]
        promoted = not failed or force
        if champion is None and not failed:
            reason = "no champion yet: the first model that passes the integrity checks becomes champion"
        elif not failed:
            reason = f"v{cand_v} beats champion v{champ_v} on the same test rows"
        elif force:
            reason = "FORCED despite: " + "; ".join(failed)
        else:
            reason = "refused: " + "; ".join(failed)
        if evidence is not None and not failed:
            lift = describe_lift(evidence.metrics[ONLINE_METRIC])
            reason += f"; online in experiment {evidence.id} ({online_rule.value}): GMV/request lift {lift}"
        decision = Decision(promoted, cand_v, champ_v, reason, force, cand_m, champ_m, checks)
        stamp = audit.now()
        _tag(
            client,
            name,
            cand_v,
            {
                "promotion_decision": "promoted" if promoted else "refused",
                "promotion_reason": reason[:4900],
                "promotion_forced": str(force and bool(failed)).lower(),
                "promotion_compared_to": decision.champion_before or "",
                "promotion_at": stamp,
                "promotion_by": audit.actor(),
                "promotion_metrics": json.dumps({"candidate": cand_m, "champion": champ_m}),
                # empty without an experiment, so a later promotion never leaves an earlier one's evidence behind
                "promotion_experiment": experiment or "",
                "promotion_online": json.dumps(online) if online else "",
            },
        )
        if promoted:
            if champion is not None:
                aliases.set(PREVIOUS_CHAMPION, str(champion.version))
                _tag(client, name, str(champion.version), {"replaced_by": cand_v, "replaced_at": stamp})
            aliases.set(CHAMPION, cand_v)
            aliases.delete(CHALLENGER)
        audit.record(
            client,
            settings,
            audit.Event(
                kind="promote" if promoted else "refuse",
                model=name,
                from_version=decision.champion_before,
                to_version=cand_v,
                at=stamp,
                by=audit.actor(),
                reason=reason,
                forced=force and bool(failed),
                metrics={"candidate": cand_m, "champion": champ_m} | ({"online": online} if online else {}),
                experiment=experiment,
            ),
        )
    return decision


def rollback(settings: Settings | None = None) -> audit.Event:
    """Make the champion before the current one champion again, and record that."""
    settings = settings or get_settings()
    client = connect(settings)
    name = settings.model_name
    with move_aliases(settings, name) as aliases:
        current = version_by_alias(client, name, CHAMPION)
        if current is None:
            raise PromotionError(f"{name} has no champion to roll back")
        cur_v = str(current.version)
        promotions = [e for e in audit.history(client, settings, name) if e.kind in ("promote", "rollback")]
        # The promotion that installed the current champion tells what it replaced.
        installed_by = next((e for e in reversed(promotions) if e.to_version == cur_v and e.kind == "promote"), None)
        if installed_by is None or installed_by.from_version is None:
            raise PromotionError(f"v{cur_v} was the first champion: there is nothing to roll back to")
        target = installed_by.from_version
        stamp = audit.now()
        aliases.set(CHAMPION, target)
        aliases.set(PREVIOUS_CHAMPION, cur_v)
        _tag(client, name, cur_v, {"rolled_back_at": stamp, "rolled_back_by": audit.actor()})
        _tag(client, name, target, {"restored_at": stamp})
        event = audit.Event(
            "rollback",
            name,
            cur_v,
            target,
            stamp,
            audit.actor(),
            f"rollback: v{cur_v} -> v{target} (the champion v{cur_v} replaced)",
            False,
            {},
        )
        audit.record(client, settings, event)
    return event
