"""Champion/challenger promotion: the newest version replaces the champion only if it wins on the same rows."""

from __future__ import annotations

import getpass
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import mlflow.pyfunc
import pandas as pd
from mlflow import MlflowClient

from platform_common.settings import Settings, get_settings
from training.bundle import RankerBundle
from training.metrics import binary_metrics
from training.registry import CHAMPION, connect, latest_version, version_by_alias


@dataclass(frozen=True)
class Decision:
    promoted: bool
    candidate: str
    champion_before: str | None
    reason: str
    candidate_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)


def load_bundle(settings: Settings, version: str) -> RankerBundle:
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
    bundle = model.unwrap_python_model()
    if not isinstance(bundle, RankerBundle):
        raise TypeError(f"version {version} is not a ranker bundle")
    return bundle


def score_on(bundle: RankerBundle, rows: pd.DataFrame) -> dict[str, float]:
    assert bundle.spec is not None
    missing = [c for c in bundle.spec.columns if c not in rows.columns]
    if missing:
        raise ValueError(f"the frozen test rows lack columns the model needs: {missing}")
    pred = bundle.score_matrix(bundle.spec.frame_matrix(rows))["pctr"]
    return binary_metrics(rows["clicked"].to_numpy(), pred, "ctr")


def _record(client: MlflowClient, name: str, decision: Decision) -> None:
    tags = {
        "promotion_decision": "promoted" if decision.promoted else "refused",
        "promotion_reason": decision.reason,
        "promotion_compared_to": decision.champion_before or "",
        "promotion_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "promotion_by": getpass.getuser(),
        "promotion_metrics": json.dumps(
            {"candidate": decision.candidate_metrics, "champion": decision.champion_metrics}
        ),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, decision.candidate, key, value)


def promote(settings: Settings | None = None, min_auc_gain: float = 0.0) -> Decision:
    settings = settings or get_settings()
    client = connect(settings)
    name = settings.model_name
    candidate = latest_version(client, name)
    if candidate is None:
        raise LookupError(f"no version of {name} is registered: run `make train` first")
    champion = version_by_alias(client, name, CHAMPION)
    if champion is not None and champion.version == candidate.version:
        return Decision(False, candidate.version, champion.version, f"v{candidate.version} is already champion")

    if candidate.tags.get("leakage_guard") != "passed":
        reason = candidate.tags.get("leakage_guard_reason", "the leakage guard did not run for this version")
        decision = Decision(False, candidate.version, champion.version if champion else None, f"refused: {reason}")
    elif champion is None:
        decision = Decision(True, candidate.version, None, "no champion yet: the first model becomes champion")
    else:
        test_path = candidate.tags.get("test_set_path")
        if not test_path:
            raise ValueError(f"v{candidate.version} has no frozen test set (tag test_set_path)")
        rows = pd.read_parquet(test_path)
        cand_m = score_on(load_bundle(settings, candidate.version), rows)
        champ_m = score_on(load_bundle(settings, champion.version), rows)
        gain = cand_m["ctr_auc"] - champ_m["ctr_auc"]
        promoted = gain > min_auc_gain
        verdict = "beats" if promoted else "does not beat"
        reason = (
            f"v{candidate.version} {verdict} champion v{champion.version} on the same {len(rows):,} test rows: "
            f"AUC {cand_m['ctr_auc']:.4f} vs {champ_m['ctr_auc']:.4f} (gain {gain:+.4f}, required > "
            f"{min_auc_gain:+.4f})"
        )
        decision = Decision(promoted, candidate.version, champion.version, reason, cand_m, champ_m)

    _record(client, name, decision)
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, decision.candidate)
    return decision


def decision_json(decision: Decision) -> str:
    return json.dumps(asdict(decision), indent=2)
