"""Promotion on online evidence: the part of the gate that reads an experiment's analysis.

`make promote EXPERIMENT=<id>` adds these checks to the offline gate (training/promotion.py). The evidence is
`$SHOPRANK_HOME/experiments/<id>/summary.json`, written by `make experiment-report` and read through the file
contract in platform_common/experiment_summary.py: training never imports serving, which runs the experiment.

Bad input (an id that is not an experiment of the registry, a missing or malformed summary) is an
`EvidenceError` raised before anything is written; evidence that is read but not good enough (the wrong
version, not readable yet, a lift that is not significant, a guardrail that failed) is a failed check, so the
refusal is recorded like any other.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from platform_common.experiment_summary import (
    ExperimentSummary,
    MetricSummary,
    SummaryError,
    read_summary,
    summary_path,
)
from platform_common.settings import Settings

if TYPE_CHECKING:  # the CLI imports OnlineRule at start-up; MLflow is imported when a promotion runs
    from mlflow import MlflowClient

# The experiment id's shape and the registered-model tag an experiment is stored under (the serving side,
# serving/experiments/model.py and store.py, defines both; tests/training/test_online_gate.py keeps them equal).
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
EXPERIMENT_TAG_PREFIX = "shoprank.experiment."
ONLINE_METRIC = "gmv_per_request"
# Sample-ratio mismatch: below this p-value the split is broken and the A/B's lift is not evidence. 0.001, not
# 0.05: the test runs on every read of every experiment, and a false alarm would block a good model.
SRM_ALPHA = 0.001


class OnlineRule(StrEnum):
    """What the GMV-per-request lift's two-sided 95% interval [ci_low, ci_high] must show.

    superior: ci_low > 0, the whole interval above zero: the treatment earns significantly more (5% level).
    non-inferior: ci_high >= 0, the interval does not lie wholly below zero: the experiment did not show the
    treatment to earn less (5% level). Only as strong as the experiment's power, which is why `readable` (the
    pre-registered horizon reached) is required under both rules.
    """

    SUPERIOR = "superior"
    NON_INFERIOR = "non-inferior"


class EvidenceError(ValueError):
    """The experiment or its analysis cannot be read: the promotion does not run, nothing is changed."""


def load_evidence(settings: Settings, client: MlflowClient, experiment_id: str) -> ExperimentSummary:
    """The experiment's summary, after checking the id names an experiment of this registry."""
    from platform_common.registry import registered_model

    if not ID_PATTERN.match(experiment_id):
        raise EvidenceError(f"experiment id {experiment_id!r} is not an id (lower-case letters, digits, _ and -)")
    model = registered_model(client, settings.model_name)
    if model is None or EXPERIMENT_TAG_PREFIX + experiment_id not in model.tags:
        raise EvidenceError(f"no experiment {experiment_id!r} on {settings.model_name} (`make experiments` lists them)")
    path = summary_path(settings.experiments_dir, experiment_id)
    try:
        if path.is_file():  # the contract's reader names a field; text that is not JSON has none to name
            json.loads(path.read_text())
        summary = read_summary(settings.experiments_dir, experiment_id)
    except json.JSONDecodeError as exc:
        raise EvidenceError(f"{path} is not JSON: {exc}") from None
    except SummaryError as exc:
        raise EvidenceError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvidenceError(f"cannot read {path}: {exc}") from None
    where = f"summary of {experiment_id!r}"
    if summary.id != experiment_id:
        raise EvidenceError(f"{where}: field id is {summary.id!r}, not {experiment_id!r}")
    for role, arm in (("control", summary.control), ("treatment", summary.treatment)):
        if arm not in summary.arms:
            raise EvidenceError(f"{where}: field {role} names arm {arm!r}, which is not in arms {sorted(summary.arms)}")
    if ONLINE_METRIC not in summary.metrics:
        raise EvidenceError(f"{where}: field metrics.{ONLINE_METRIC} is missing")
    return summary


def _pct(value: float) -> str:
    return f"{value:+.2%}"


def describe_lift(metric: MetricSummary) -> str:
    """'+4.10% [+1.20%, +7.00%], p=0.004': the lift, its 95% interval and p-value."""
    return f"{_pct(metric.lift)} [{_pct(metric.ci_low)}, {_pct(metric.ci_high)}], p={metric.p_value:.3g}"


def online_checks(
    summary: ExperimentSummary, candidate: str, champion: str | None, rule: OnlineRule
) -> list[tuple[str, bool, str]]:
    """The online checks, as (check, passed, detail) rows beside the offline gate's."""
    out: list[tuple[str, bool, str]] = []
    tested = summary.arms[summary.treatment].model_version
    out.append(
        (
            "experiment tested the candidate",
            tested is not None and str(tested) == candidate,
            f"treatment arm {summary.treatment!r} served "
            + (f"v{tested}" if tested is not None else "several versions")
            + f"; the candidate is v{candidate}"
            + ("" if tested is None or str(tested) == candidate else f" (VERSION={tested} promotes the one tested)"),
        )
    )
    if champion is not None:
        control = summary.arms[summary.control].model_version
        out.append(
            (
                "experiment's control was the champion",
                control is not None and str(control) == champion,
                f"control arm {summary.control!r} served "
                + (f"v{control}" if control is not None else "several versions")
                + f"; the champion is v{champion}",
            )
        )
    out.append(
        ("experiment readable", summary.readable, summary.readable_reason or ("yes" if summary.readable else "no"))
    )
    if summary.design == "ab":
        srm = summary.srm_p_value
        out.append(
            (
                "sample ratio",
                srm is not None and srm >= SRM_ALPHA,
                "no sample-ratio test in the summary" if srm is None else f"p={srm:.3g} (needs >= {SRM_ALPHA})",
            )
        )
    gmv = summary.metrics[ONLINE_METRIC]
    if (gmv.model_extra or {}).get("estimable") is False:
        # the analysis found no outcome in an arm and wrote the widest interval: no evidence either way
        out.append(("online GMV/request lift", False, f"not estimable (an arm has no order): {describe_lift(gmv)}"))
    elif rule is OnlineRule.SUPERIOR:
        out.append(("online GMV/request lift", gmv.ci_low > 0, f"{describe_lift(gmv)} (superior: needs ci_low > 0)"))
    else:
        out.append(
            ("online GMV/request lift", gmv.ci_high >= 0, f"{describe_lift(gmv)} (non-inferior: needs ci_high >= 0)")
        )
    if not summary.guardrails:
        out.append(("guardrails", False, "the summary holds no guardrail: none was measured"))
    for guard in summary.guardrails:
        out.append((f"guardrail {guard.name}", guard.passed, guard.detail or ("held" if guard.passed else "failed")))
    return out


def online_figures(summary: ExperimentSummary, rule: OnlineRule) -> dict[str, Any]:
    """What the audit history and the version's tags keep of the evidence."""
    gmv = summary.metrics[ONLINE_METRIC]
    return {
        "experiment": summary.id,
        "design": summary.design,
        "rule": rule.value,
        "treatment_version": summary.arms[summary.treatment].model_version,
        "control_version": summary.arms[summary.control].model_version,
        "lift": gmv.lift,
        "ci_low": gmv.ci_low,
        "ci_high": gmv.ci_high,
        "p_value": gmv.p_value,
        "true_lift": gmv.true_lift,
        "srm_p_value": summary.srm_p_value,
        "readable": summary.readable,
        "guardrails": {g.name: g.passed for g in summary.guardrails},
    }
