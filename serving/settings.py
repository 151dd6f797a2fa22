"""The ranking service's settings: every `SHOPRANK_*` variable the service reads, validated once at start-up.

`bentoml serve serving.service:Ranker` imports serving/service.py, which reads these before the service is
declared (workers and threads are part of its declaration). A bad value stops the start with one line naming
the variable, the value and what is allowed, never a traceback and never a silent default:

    SHOPRANK_WORKERS='0': expected a whole number >= 1 and <= 64

The platform's own settings (SHOPRANK_HOME, SHOPRANK_PROFILE, connections) stay in platform_common/settings.py.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Literal, get_args

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SHOPRANK_"
FeatureRead = Literal["snapshot", "direct", "feast"]


class ServingSettings(BaseSettings):
    """Serving settings read from `SHOPRANK_*` environment variables (README.md, "Serving settings")."""

    # An empty variable means "not set" (the defaults), as `SHOPRANK_SHADOW=` did before; other platform
    # variables share the prefix, hence extra="ignore".
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore", env_ignore_empty=True)

    workers: int = Field(default=2, ge=1, le=64, description="BentoML worker processes (one per core).")
    threads: int = Field(default=8, ge=1, le=256, description="Request threads per worker.")
    feature_read: FeatureRead = Field(default="snapshot", description="How online features are read.")
    snapshot_poll_seconds: float = Field(default=5.0, gt=0, le=3600, description="Snapshot's registry poll.")
    reload_seconds: float = Field(default=30.0, gt=0, le=86400, description="Model registry poll.")
    load_retry_seconds: float = Field(default=5.0, gt=0, le=3600, description="Retry while nothing is loaded.")
    shadow: bool = Field(default=False, description="Also score the challenger and log both scores.")
    request_log_rate: float = Field(default=0.01, ge=0, le=1, description="Share of requests logged to parquet.")
    request_log_flush_seconds: float = Field(default=10.0, gt=0, le=3600, description="Request-log write interval.")
    access_log: bool = Field(default=False, description="BentoML's per-request access log.")
    trace_rank: bool = Field(default=False, description="BentoML's OpenTelemetry spans for /rank.")
    # Admission control (serving/guard.py, AdmissionControl).
    max_in_flight: int = Field(default=16, ge=1, le=1024, description="/rank requests in flight per worker.")
    queue_deadline_seconds: float = Field(
        default=1.0, gt=0, le=60, description="A /rank request that waited longer before scoring is answered 503."
    )
    queue_target_seconds: float = Field(
        default=0.01,
        gt=0,
        le=10,
        description="Queue delay a /rank request may have when the queue has stood above it for a whole interval.",
    )
    queue_interval_seconds: float = Field(
        default=0.1, gt=0, le=60, description="How long the queue delay must stay above target before shedding."
    )
    request_start_header: bool = Field(
        default=False,
        description="Count a /rank request's wait from its X-Request-Start stamp (set by a proxy in front).",
    )
    retry_after_seconds: int = Field(default=1, ge=1, le=3600, description="Retry-After of a shed request.")


class SettingsError(ValueError):
    """A bad serving setting; its message is one line naming the variable."""


def expected(name: str) -> str:
    """What a field allows, in words, from its type and bounds (one message says both ends of a range)."""
    field = ServingSettings.model_fields[name]
    if field.annotation is bool:
        return "a boolean (1/0, true/false, yes/no, on/off)"
    if name == "feature_read":
        return "one of " + ", ".join(get_args(FeatureRead))
    low = high = ""
    for meta in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">")):
            if getattr(meta, attr, None) is not None:
                low = f"{sign} {getattr(meta, attr)}"
        for attr, sign in (("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                high = f"{sign} {getattr(meta, attr)}"
    kind = "a whole number" if field.annotation is int else "a number"
    return f"{kind} {low} and {high}".strip() if low and high else f"{kind} {low or high}".strip()


def describe(exc: ValidationError) -> str:
    """One line for the first bad variable: `SHOPRANK_X='value': expected <what is allowed>`."""
    error = exc.errors(include_url=False)[0]
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else ""
    if name not in ServingSettings.model_fields:
        return f"{ENV_PREFIX}*: {error['msg']}"
    return f"{ENV_PREFIX}{name.upper()}={error.get('input')!r}: expected {expected(name)}"


def load() -> ServingSettings:
    """Read and validate the environment now; raises SettingsError with a one-line message."""
    try:
        return ServingSettings()
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None


@cache
def get_serving_settings() -> ServingSettings:
    """The settings of this process, read once (every worker re-imports the service and reads the same env)."""
    return load()


def serving_settings_or_exit() -> ServingSettings:
    """For the service's import: a bad value ends the process with the one-line message, exit status 2."""
    try:
        return get_serving_settings()
    except SettingsError as exc:
        print(f"shoprank: invalid serving setting: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
