"""Loading an experiment's arms: shared models, fallbacks with the reason, nothing swapped when nothing changed."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pytest

from platform_common.settings import Settings
from serving.champion import LoadedModel
from serving.experiments import live as live_module
from serving.experiments.live import load_live, serve
from serving.experiments.model import build
from serving.features.base import FeatureVectors
from serving.schemas import RankRequest

SETTINGS = Settings(home="/nonexistent", scale="tiny")


BATCH = ("user_ctr_7d", "product_price", "position")
STREAM = (*BATCH, "us_clicks_5m")


def model(version: str, feature_service: str = "ctr_model_v1", columns: tuple[str, ...] = BATCH) -> LoadedModel:
    bundle = SimpleNamespace(spec=SimpleNamespace(feature_service=feature_service, columns=columns, inputs=columns))
    return LoadedModel("shoprank_ranker", version, bundle)  # type: ignore[arg-type]


class Loader:
    def __init__(
        self,
        broken: dict[str, Exception] | None = None,
        service: dict[str, str] | None = None,
        columns: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.calls: list[str] = []
        self.broken = broken or {}
        self.service = service or {}
        self.columns = columns or {}

    def __call__(self, settings: Settings, version: str) -> LoadedModel:
        self.calls.append(version)
        if version in self.broken:
            raise self.broken[version]
        return model(version, self.service.get(version, "ctr_model_v1"), self.columns.get(version, BATCH))


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
    loader = Loader(
        broken={"3": OSError("No such file or directory: '/x/model'\nsecond line")},
        service={"4": "other"},
        columns={"4": STREAM},
    )
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
    fallback = live.arms["d"].fallback or ""
    assert "reads feature service other, the service reads ctr_model_v1 and does not read us_clicks_5m" in fallback
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


class Reader:
    """Features of any request: merchant ages only (the model is faked below)."""

    def fetch(self, user_id, product_ids, now=None) -> FeatureVectors:
        n = len(product_ids)
        return FeatureVectors({"merchant_age_days": np.full(n, 100.0)}, True, [True] * n)


def fake_scores(model: LoadedModel, vectors, surface, now, is_campaign_day) -> dict[str, np.ndarray]:
    """v1 likes the first candidates best, v2 the last: two rankings that disagree everywhere."""
    n = len(vectors.known_products)
    ramp = np.linspace(0.1, 0.9, n)
    pctr = ramp[::-1].copy() if model.version == "1" else ramp.copy()
    return {"pctr": pctr, "pcvr": np.full(n, 0.5), "pctcvr": pctr * 0.5, "expected_gmv": pctr * 10}


def served(monkeypatch, arms: str, design: str, users: list[str]):
    monkeypatch.setattr(live_module, "score_candidates", fake_scores)
    champion = model("1")
    live = load_live(SETTINGS, definition(arms, design), {"champion": "1"}, champion, None, Loader())
    request = RankRequest.model_construct(
        user_id="u",
        product_ids=[f"p{i}" for i in range(10)],
        surface="home_feed",
        objective="gmv",
        new_merchant_boost=0.0,
    )
    now = datetime(2026, 1, 2, tzinfo=UTC)
    return live, [serve(live, request.model_copy(update={"user_id": u}), Reader(), now, False) for u in users]


def test_serve_ab_ranks_with_the_users_arm_and_names_it(monkeypatch):
    users = [f"u{i}" for i in range(40)]
    live, answers = served(monkeypatch, "control=champion,treatment=v2", "ab", users)
    arms = set()
    for user, s in zip(users, answers, strict=True):
        info = s.response.experiment
        arm = live.assigner.arm(user)
        arms.add(arm)
        first = s.response.ranking[0].product_id
        assert info.arm == arm and s.exposure.arm == arm and first == ("p0" if arm == "control" else "p9")
        assert s.response.request_id == s.exposure.request_id and info.credit is None
        assert list(s.exposure.credit) == [arm] * 10
    assert arms == {"control", "treatment"}


def test_serve_interleaving_merges_two_rankings_with_each_slots_scores(monkeypatch):
    _, answers = served(monkeypatch, "control=champion,treatment=v2", "interleaving", ["u1"] * 200)
    first_picks = set()
    for s in answers:
        info, ranking = s.response.experiment, s.response.ranking
        assert info.arm == "interleaved" and info.versions == {"control": "1", "treatment": "2"}
        assert sorted(p.product_id for p in ranking) == sorted(f"p{i}" for i in range(10))
        # The two arms disagree completely, so each takes its favourites from its own end of the list.
        for product, arm in zip(ranking, info.credit, strict=True):
            index = int(product.product_id[1:])
            assert (index < 5) == (arm == "control"), (product.product_id, arm)
            pctr = np.linspace(0.1, 0.9, 10)[9 - index if arm == "control" else index]
            assert product.pctr == pytest.approx(pctr) and product.expected_gmv == pytest.approx(pctr * 10)
        assert info.credit.count("control") == 5 and list(s.exposure.credit) == info.credit
        first_picks.add(info.credit[0])
    assert first_picks == {"control", "treatment"}  # a new request id, a new coin


def test_a_batch_model_is_an_arm_beside_a_champion_that_reads_more_views():
    """The stream champion's service reads every view v1 needs: v1 is served from the same vectors. The reverse
    (a stream arm beside a batch champion) falls back with the missing columns named."""
    stream_champion = model("2", "ctr_model_v2_stream", STREAM)
    loader = Loader(service={"1": "ctr_model_v1"})
    live = load_live(SETTINGS, definition("a=champion,b=v1"), {"champion": "2"}, stream_champion, None, loader)
    assert live.arms["b"].fallback is None and live.arms["b"].model.version == "1"
    batch_champion = model("1")
    loader = Loader(service={"2": "ctr_model_v2_stream"}, columns={"2": STREAM})
    live = load_live(SETTINGS, definition("a=champion,b=v2"), {"champion": "1"}, batch_champion, None, loader)
    assert live.arms["b"].model is batch_champion
    assert "does not read us_clicks_5m" in (live.arms["b"].fallback or "")
