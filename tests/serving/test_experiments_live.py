"""Loading an experiment's arms: shared models, fallbacks with the reason, nothing swapped when nothing changed."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from platform_common.settings import Settings
from serving.champion import LoadedModel
from serving.experiments.live import load_live
from serving.experiments.model import build

SETTINGS = Settings(home="/nonexistent", scale="tiny")


def model(version: str, feature_service: str = "ctr_model_v1") -> LoadedModel:
    bundle = SimpleNamespace(spec=SimpleNamespace(feature_service=feature_service))
    return LoadedModel("shoprank_ranker", version, bundle)  # type: ignore[arg-type]


class Loader:
    def __init__(self, broken: dict[str, Exception] | None = None, service: dict[str, str] | None = None) -> None:
        self.calls: list[str] = []
        self.broken = broken or {}
        self.service = service or {}

    def __call__(self, settings: Settings, version: str) -> LoadedModel:
        self.calls.append(version)
        if version in self.broken:
            raise self.broken[version]
        return model(version, self.service.get(version, "ctr_model_v1"))


def definition(arms: str, design: str = "ab"):
    return build("e1", design, arms, "salt", datetime(2026, 1, 1, tzinfo=UTC), None)


def test_arms_on_one_version_share_one_model_and_the_champion_is_reused():
    champion = model("1")
    loader = Loader()
    live = load_live(SETTINGS, definition("a=champion,b=v1,c=v2,d=2"), {"champion": "1"}, champion, None, loader)
    assert loader.calls == ["2"]  # v1 is the champion's model, v2 loaded once for two arms
    assert live.arms["a"].model is champion and live.arms["b"].model is champion
    assert live.arms["c"].model is live.arms["d"].model and live.arms["c"].model.version == "2"
    assert all(a.fallback is None for a in live.arms.values())


def test_nothing_changed_returns_the_same_object_and_loads_nothing():
    champion = model("1")
    loader = Loader()
    first = load_live(SETTINGS, definition("a=champion,b=v2"), {"champion": 1}, champion, None, loader)  # type: ignore[dict-item]
    again = load_live(SETTINGS, definition("a=champion,b=v2"), {"champion": "1"}, champion, first, loader)
    assert again is first and loader.calls == ["2"]
    champion_2 = model("2")
    moved = load_live(SETTINGS, definition("a=champion,b=v2"), {"champion": "2"}, champion_2, first, loader)
    assert moved is not first and moved.arms["a"].model is moved.arms["b"].model is champion_2
    assert loader.calls == ["2"]


def test_unloadable_arms_fall_back_to_the_champion_with_the_reason_and_are_retried():
    champion = model("1")
    loader = Loader(broken={"3": OSError("No such file or directory: '/x/model'\nsecond line")}, service={"4": "other"})
    live = load_live(
        SETTINGS,
        definition("a=champion:0.25,b=v3:0.25,c=challenger:0.25,d=v4:0.25"),
        {"champion": "1"},
        champion,
        None,
        loader,
    )
    assert live.arms["a"].fallback is None
    assert live.arms["b"].model is champion
    assert live.arms["b"].fallback == "v3 could not be loaded: OSError: No such file or directory: '/x/model'"
    assert live.arms["c"].model is champion and live.arms["c"].fallback == "alias 'challenger' is not set"
    assert "reads feature service other, the service reads ctr_model_v1" in (live.arms["d"].fallback or "")
    again = load_live(
        SETTINGS,
        definition("a=champion:0.25,b=v3:0.25,c=challenger:0.25,d=v4:0.25"),
        {"champion": "1"},
        champion,
        live,
        loader,
    )
    assert again is live and loader.calls.count("3") == 2  # retried at the next poll; same failure, no swap
    loader.broken.clear()
    healed = load_live(
        SETTINGS,
        definition("a=champion:0.25,b=v3:0.25,c=challenger:0.25,d=v4:0.25"),
        {"champion": "1"},
        champion,
        live,
        loader,
    )
    assert healed is not live and healed.arms["b"].fallback is None and healed.arms["b"].model.version == "3"
