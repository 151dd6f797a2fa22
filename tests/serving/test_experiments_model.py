"""The experiment definition refuses every bad input with one line saying why, at the edge (model.build)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from serving.experiments.model import Experiment, ExperimentError, build, parse_arms

START = datetime(2026, 11, 30, 12, tzinfo=UTC)


def make(arms: str = "control=champion:0.5,treatment=v3:0.5", design: str = "ab", **kw) -> Experiment:
    args = {"id": "exp1", "design": design, "arms": arms, "salt": "s1", "start": START, "stop": None} | kw
    return build(**args)


def refused(**kw) -> str:
    with pytest.raises(ExperimentError) as info:
        make(**kw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_good_definition_is_frozen_and_normalised():
    e = make(stop=START + timedelta(days=7))
    assert [(a.name, a.target, a.share) for a in e.arms] == [("control", "champion", 0.5), ("treatment", "3", 0.5)]
    assert e.unit == "user" and e.salt == "s1" and e.end == START + timedelta(days=7)
    with pytest.raises(ValidationError):
        e.id = "other"  # type: ignore[misc]
    assert make(salt=None).salt == "exp1"  # the id is the default salt


def test_shares_may_be_left_out_and_then_split_equally():
    assert [a.share for a in make(arms="a=champion,b=v2,c=v3").arms] == pytest.approx([1 / 3] * 3)
    assert [a.share for a in make(arms="a=champion,b=2", design="interleaving").arms] == [0.5, 0.5]


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"arms": "control=champion:0.5,treatment=v3:0.4"}, "arm shares must sum to 1, got 0.9"),
        ({"arms": "control=champion:1.2,treatment=v3:-0.2"}, "must be above 0 and at most 1"),
        ({"arms": "control=champion:1,treatment=v3:0"}, "share 0.0 must be above 0"),
        ({"arms": "control=champion:0.5,treatment=v3"}, "give a share to every arm or to none"),
        ({"arms": "control=champion:half,treatment=v3:0.5"}, "share 'half' of arm 'control' is not a number"),
        ({"arms": "control=champion:1"}, "needs at least two arms, got 1"),
        ({"arms": "control,treatment=v3"}, "is not NAME=TARGET[:SHARE]"),
        ({"arms": "a=champion:0.5,a=v3:0.5"}, "arm names must be unique"),
        ({"arms": "Control=champion:0.5,t=v3:0.5"}, "arms.0.name"),
        ({"arms": "a=latest:0.5,b=v3:0.5"}, "neither a version (3 or v3) nor a registry alias"),
        ({"arms": "a=champ ion:0.5,b=v3:0.5"}, "neither a version (3 or v3) nor a registry alias"),
        ({"arms": "interleaved=champion:0.5,b=v3:0.5"}, "'interleaved' is reserved"),
        ({"design": "abtest"}, "design 'abtest' is not one of ab, interleaving"),
        ({"design": "interleaving", "arms": "a=champion,b=v2,c=v3"}, "interleaving takes exactly two arms, got 3"),
        ({"design": "interleaving", "arms": "a=champion:0.7,b=v2:0.3"}, "fair coin: 0.5 each"),
        ({"id": "Bad Id!"}, "id: String should match pattern"),
        ({"stop": START}, "must be after start"),
        ({"start": datetime(2026, 11, 30, 12)}, "times must carry a time zone"),
    ],
)
def test_bad_input_is_refused_with_the_reason(kw, needle):
    message = refused(**kw)
    assert needle in message, message
    assert message.startswith(f"experiment {kw.get('id', 'exp1')!r} refused: ")


def test_parse_arms_takes_versions_with_or_without_v():
    assert parse_arms("a=v12:0.25, b=12:0.75", "ab") == [
        {"name": "a", "target": "v12", "share": 0.25},
        {"name": "b", "target": "12", "share": 0.75},
    ]
    assert [a.target for a in make(arms="a=v12:0.25,b=12:0.75").arms] == ["12", "12"]


def test_windows_running_finished_and_overlap():
    week = make(stop=START + timedelta(days=7))
    assert not week.running(START - timedelta(seconds=1)) and week.running(START)
    assert not week.running(START + timedelta(days=7)) and week.finished(START + timedelta(days=7))
    later = make(id="exp2", start=START + timedelta(days=7))  # starts exactly when the first ends: no overlap
    assert not week.overlaps(later) and not later.overlaps(week)
    open_ended = make(id="exp3", start=START - timedelta(days=30))
    assert open_ended.overlaps(week) and week.overlaps(open_ended) and open_ended.overlaps(later)
    stopped = Experiment.model_validate(open_ended.model_dump() | {"stopped_at": START - timedelta(days=1)})
    assert stopped.end == START - timedelta(days=1) and not stopped.overlaps(week)
