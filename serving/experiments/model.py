"""What an online experiment is: a frozen, validated definition, checked once where it enters (CLI or store).

Shares:
- `ab`: each arm's share of users; they must be > 0 and sum to 1. Every user is in the experiment while it runs.
- `interleaving`: exactly two arms and every user gets one answer merged from both (team draft with a fair
  coin), so a share cannot split users; it is each arm's expected share of the slots, and must be 0.5 / 0.5
  (the default when shares are left out). A biased coin would credit one arm for picks it did not earn.

Times are UTC. `stop` is the planned end (optional: open-ended); `stopped_at` is set by `stop` and ends the
experiment early. The experiment runs on [start, min(stop, stopped_at)).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Design = Literal["ab", "interleaving"]
DESIGNS: tuple[str, ...] = ("ab", "interleaving")
INTERLEAVED = "interleaved"  # the request-level arm of an interleaving answer; its slots name the real arms
SHARE_TOLERANCE = 1e-9
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # safe as a folder name and inside an MLflow tag key
ARM_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
# A registry alias (MLflow's own rule: letters, digits, _ and -, not v<digits> or latest) or a version:
# `3` or `v3`, stored as the digits.
TARGET_PATTERN = re.compile(r"^(?:v?(?P<version>\d+)|(?P<alias>[A-Za-z_][A-Za-z0-9_-]{0,254}))$")


class ExperimentError(ValueError):
    """A refused experiment definition or command; the message is one line, fit to print as is."""


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("times must carry a time zone (UTC), e.g. 2026-11-30T12:00:00Z")
    return value.astimezone(UTC)


UtcTime = Annotated[datetime, AfterValidator(_utc)]


def normalise_target(target: str) -> str:
    """`v3` and `3` are version 3 (stored as `3`); anything else must look like a registry alias."""
    match = TARGET_PATTERN.match(target.strip())
    if match is None or target.strip().lower() == "latest":
        raise ValueError(f"arm target {target!r} is neither a version (3 or v3) nor a registry alias")
    return str(int(match["version"])) if match["version"] else match["alias"]


def is_version(target: str) -> bool:
    return target.isdigit()


class Arm(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=ARM_PATTERN)
    target: str = Field(description="A registry alias of the ranker (e.g. champion) or a version number.")
    share: float

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        return normalise_target(value)

    @field_validator("share")
    @classmethod
    def _share(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0 or value > 1:
            raise ValueError(f"share {value} must be above 0 and at most 1")
        return value

    def describe(self) -> str:
        target = f"v{self.target}" if is_version(self.target) else self.target
        return f"{self.name}={target}:{self.share:g}"


class Experiment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    design: Design
    arms: tuple[Arm, ...]
    unit: Literal["user"] = "user"
    salt: str = Field(min_length=1, max_length=128)
    start: UtcTime
    stop: UtcTime | None = None
    stopped_at: UtcTime | None = None
    created_by: str = ""
    stopped_by: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        names = [a.name for a in self.arms]
        if len(self.arms) < 2:
            raise ValueError(f"an experiment needs at least two arms, got {len(self.arms)}")
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if INTERLEAVED in names:
            raise ValueError(f"'{INTERLEAVED}' is reserved for the arm of interleaved answers")
        total = math.fsum(a.share for a in self.arms)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"arm shares must sum to 1, got {total:g}")
        if self.design == "interleaving":
            if len(self.arms) != 2:
                raise ValueError(f"interleaving takes exactly two arms, got {len(self.arms)}")
            if any(abs(a.share - 0.5) > SHARE_TOLERANCE for a in self.arms):
                raise ValueError("interleaving shares are the slots each arm gets from a fair coin: 0.5 each")
        if self.stop is not None and self.stop <= self.start:
            raise ValueError(f"stop {self.stop.isoformat()} must be after start {self.start.isoformat()}")
        return self

    @property
    def end(self) -> datetime | None:
        """When it ends (or ended): the planned stop or the stop command, whichever is first; None: open-ended."""
        ends = [t for t in (self.stop, self.stopped_at) if t is not None]
        return min(ends) if ends else None

    def running(self, now: datetime) -> bool:
        end = self.end
        return self.start <= now and (end is None or now < end)

    def finished(self, now: datetime) -> bool:
        end = self.end
        return end is not None and end <= now

    def overlaps(self, other: Experiment) -> bool:
        """Whether the two time windows share an instant (an open end runs forever)."""
        mine, theirs = self.end, other.end
        return (theirs is None or self.start < theirs) and (mine is None or other.start < mine)

    def describe(self) -> str:
        end = self.end.isoformat() if self.end else "open"
        arms = ", ".join(a.describe() for a in self.arms)
        return f"{self.id} ({self.design}: {arms}; salt {self.salt}; {self.start.isoformat()} -> {end})"


def parse_arms(spec: str, design: str) -> list[dict[str, object]]:
    """`control=champion:0.5,treatment=v3:0.5` -> arm dicts; shares left out on every arm split equally."""
    arms: list[dict[str, object]] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, rest = part.partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise ExperimentError(f"arm {part!r} is not NAME=TARGET[:SHARE] (e.g. control=champion:0.5)")
        target, colon, share = rest.partition(":")
        arm: dict[str, object] = {"name": name.strip(), "target": target.strip()}
        if colon:
            try:
                arm["share"] = float(share)
            except ValueError:
                raise ExperimentError(f"share {share!r} of arm {name.strip()!r} is not a number") from None
        arms.append(arm)
    given = sum("share" in a for a in arms)
    if given not in (0, len(arms)):
        raise ExperimentError("give a share to every arm or to none (none: equal shares)")
    if not given:
        for a in arms:
            a["share"] = 1.0 / len(arms) if arms else 1.0
    if design == "interleaving" and not given and len(arms) == 2:
        for a in arms:
            a["share"] = 0.5
    return arms


def one_line(exc: ValidationError) -> str:
    """pydantic's errors as one line: `field: reason; ...`."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def build(
    id: str,
    design: str,
    arms: str | list[dict[str, object]],
    salt: str | None,
    start: datetime,
    stop: datetime | None,
    created_by: str = "",
) -> Experiment:
    """The one way a definition enters from outside: every rule above, as ExperimentError with one line."""
    try:
        if design not in DESIGNS:
            raise ExperimentError(f"design {design!r} is not one of {', '.join(DESIGNS)}")
        arm_dicts = parse_arms(arms, design) if isinstance(arms, str) else arms
        return Experiment.model_validate(
            {
                "id": id,
                "design": design,
                "arms": arm_dicts,
                "salt": salt or id,
                "start": start,
                "stop": stop,
                "created_by": created_by,
            }
        )
    except ValidationError as exc:
        raise ExperimentError(f"experiment {id!r} refused: {one_line(exc)}") from None
    except ExperimentError as exc:
        raise ExperimentError(f"experiment {id!r} refused: {exc}") from None
