"""What a check says: an alert (fires, exit non-zero) or an observation kept for the report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Window:
    """The period judged: [start, end) in UTC."""

    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"

    def shifted(self, days: int) -> Window:
        return Window(self.start + timedelta(days=days), self.end + timedelta(days=days))


@dataclass(frozen=True)
class Alert:
    check: str  # e.g. data_quality.row_count, feature.drift, freshness.view, model.calibration
    target: str  # the table, view/feature or surface it is about
    measured: float
    threshold: float
    window: str
    message: str


@dataclass
class Measurement:
    """One number a check measured, alerting or not (the report's tables and MLflow's metrics)."""

    check: str
    target: str
    value: float
    threshold: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckResult:
    alerts: list[Alert] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why something was not judged (no data, too few rows)
    series: dict[str, Any] = field(default_factory=dict)  # frames for the report's plots

    def extend(self, other: CheckResult) -> CheckResult:
        self.alerts += other.alerts
        self.measurements += other.measurements
        self.notes += other.notes
        self.series |= other.series
        return self

    def measure(
        self,
        check: str,
        target: str,
        value: float,
        threshold: float | None,
        window: Window,
        fires: bool,
        message: str,
        **detail: Any,
    ) -> None:
        self.measurements.append(Measurement(check, target, float(value), threshold, detail))
        if fires and threshold is not None:
            self.alerts.append(Alert(check, target, round(float(value), 6), float(threshold), window.label, message))


def write_alerts(path: Path, alerts: list[Alert], window: Window, status: Literal["ok", "alert"]) -> None:
    payload = {"window": window.label, "status": status, "alerts": [asdict(a) for a in alerts]}
    path.write_text(json.dumps(payload, indent=2) + "\n")
