"""The contract between an experiment's analysis (serving/experiments) and the promotion gate (training).

`make experiment-report ID=<id>` writes `$SHOPRANK_HOME/experiments/<id>/summary.json` in this shape;
`make promote EXPERIMENT=<id>` reads it. It lives here, below both, so that neither imports the other: data
flows simulator -> transforms -> feature_repo -> training -> serving, and the gate reads a file, not a module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SUMMARY_FILE = "summary.json"


class ArmSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    model_version: str | None = Field(description="Registry version that served the arm (None if it varied).")
    requests: int = Field(ge=0)
    users: int = Field(ge=0)


class MetricSummary(BaseModel):
    """Relative lift of treatment over control (0.05 = +5%), its 95% interval and p-value; the oracle's truth."""

    model_config = ConfigDict(frozen=True, extra="allow")

    lift: float
    ci_low: float
    ci_high: float
    p_value: float = Field(ge=0, le=1)
    true_lift: float | None = Field(None, description="The oracle's lift for the same served lists.")


class Guardrail(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    name: str
    passed: bool
    detail: str = ""


class ExperimentSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    id: str
    design: Literal["ab", "interleaving"]
    control: str = Field(description="Name of the control arm; lifts are treatment over control.")
    treatment: str
    arms: dict[str, ArmSummary]
    srm_p_value: float | None = Field(None, ge=0, le=1, description="Sample-ratio-mismatch test (A/B only).")
    metrics: dict[str, MetricSummary] = Field(description="At least gmv_per_request, ctr and cvr.")
    guardrails: list[Guardrail] = Field(default_factory=list)
    readable: bool = Field(description="Whether the peeking rule allows reading the result now.")
    readable_reason: str = ""


class SummaryError(ValueError):
    """A summary that is missing or does not match the contract; the message names the file and the field."""


def summary_path(experiments_dir: Path, experiment_id: str) -> Path:
    return experiments_dir / experiment_id / SUMMARY_FILE


def write_summary(experiments_dir: Path, summary: ExperimentSummary) -> Path:
    path = summary_path(experiments_dir, summary.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_summary(experiments_dir: Path, experiment_id: str) -> ExperimentSummary:
    path = summary_path(experiments_dir, experiment_id)
    if not path.exists():
        raise SummaryError(
            f"no analysis for experiment {experiment_id!r}: {path} is missing "
            f"(make experiment-report ID={experiment_id})"
        )
    try:
        return ExperimentSummary.model_validate_json(path.read_text())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SummaryError(f"{path}: field {where}: {first['msg']}") from None
