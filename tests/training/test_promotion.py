"""Promotion that a team can trust: gate, refusal reasons, force, audit, rollback, and no half-moved aliases."""

from __future__ import annotations

import shutil
import threading

import mlflow
import pytest

from platform_common.registry import CHALLENGER, CHAMPION, connect, version_by_alias
from platform_common.settings import Settings
from training import audit
from training.promotion import PREVIOUS_CHAMPION, PromotionError, PromotionPolicy, promote, rollback

COPIED_TAGS = ("leakage_guard", "leakage_guard_reason", "data_fingerprint", "test_set_path", "feature_service")


@pytest.fixture()
def registry(tiny_platform, tmp_path):
    """A private copy of the tiny platform's state, so tests can move aliases freely."""
    home = tmp_path / "home"
    shutil.copytree(tiny_platform.home_dir, home, ignore=shutil.ignore_patterns("logs"))
    settings = Settings(home=home, scale="tiny")
    return settings, connect(settings)


def clone_champion(settings: Settings, client, drop_tags: tuple[str, ...] = ()) -> str:
    """Register the champion's artifacts again as a new version (a retrain on the same data, without the wait)."""
    champ = version_by_alias(client, settings.model_name, CHAMPION)
    mv = mlflow.register_model(f"runs:/{champ.run_id}/ranker", settings.model_name)
    for key in COPIED_TAGS:
        if key not in drop_tags and key in champ.tags:
            client.set_model_version_tag(settings.model_name, mv.version, key, champ.tags[key])
    return str(mv.version)


def test_an_equal_model_is_refused_with_a_readable_reason(registry):
    settings, client = registry
    champion = str(version_by_alias(client, settings.model_name, CHAMPION).version)
    candidate = clone_champion(settings, client)
    decision = promote(settings)
    assert not decision.promoted
    assert "CTR AUC gain: +0.0000" in decision.reason
    assert decision.candidate_metrics["ctr_auc"] == decision.champion_metrics["ctr_auc"]
    assert {name for name, _, _ in decision.checks} >= {
        "leakage guard",
        "training data fingerprint",
        "feature service matches Feast",
        "signature",
        "CTR AUC gain",
    }
    assert str(version_by_alias(client, settings.model_name, CHAMPION).version) == champion
    assert str(version_by_alias(client, settings.model_name, CHALLENGER).version) == candidate
    assert client.get_model_version(settings.model_name, candidate).tags["promotion_decision"] == "refused"


def test_a_lenient_policy_promotes_and_keeps_the_previous_champion(registry):
    settings, client = registry
    before = str(version_by_alias(client, settings.model_name, CHAMPION).version)
    candidate = clone_champion(settings, client)
    decision = promote(settings, PromotionPolicy(min_auc_gain=-0.001))
    assert decision.promoted, decision.reason
    assert str(version_by_alias(client, settings.model_name, CHAMPION).version) == candidate
    assert str(version_by_alias(client, settings.model_name, PREVIOUS_CHAMPION).version) == before
    assert version_by_alias(client, settings.model_name, CHALLENGER) is None


def test_missing_fingerprint_is_refused_even_when_better(registry):
    settings, client = registry
    clone_champion(settings, client, drop_tags=("data_fingerprint",))
    decision = promote(settings, PromotionPolicy(min_auc_gain=-1))
    assert not decision.promoted
    assert "training data fingerprint: missing" in decision.reason


def test_force_promotes_and_is_recorded_as_forced(registry):
    settings, client = registry
    candidate = clone_champion(settings, client, drop_tags=("data_fingerprint",))
    decision = promote(settings, force=True)
    assert decision.promoted and decision.forced
    assert str(version_by_alias(client, settings.model_name, CHAMPION).version) == candidate
    last = audit.history(client, settings, settings.model_name)[-1]
    assert (last.kind, last.to_version, last.forced) == ("promote", candidate, True)
    assert "FORCED" in last.reason


def test_rollback_restores_the_previous_champion_and_is_audited(registry, monkeypatch):
    settings, client = registry
    first = str(version_by_alias(client, settings.model_name, CHAMPION).version)
    second = clone_champion(settings, client)
    promote(settings, force=True)
    monkeypatch.setenv("SHOPRANK_ACTOR", "oncall-engineer")
    event = rollback(settings)
    assert (event.from_version, event.to_version, event.by) == (second, first, "oncall-engineer")
    assert str(version_by_alias(client, settings.model_name, CHAMPION).version) == first
    kinds = [(e.kind, e.from_version, e.to_version) for e in audit.history(client, settings, settings.model_name)]
    assert kinds[-2:] == [("promote", first, second), ("rollback", second, first)]
    with pytest.raises(PromotionError, match="nothing to roll back to"):
        rollback(settings)


def test_two_promotions_at_once_leave_a_consistent_chain(registry):
    settings, client = registry
    start = str(version_by_alias(client, settings.model_name, CHAMPION).version)
    a, b = clone_champion(settings, client), clone_champion(settings, client)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def go(version: str) -> None:
        try:
            barrier.wait()
            promote(settings, version=version, force=True)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(v,)) for v in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    events = [e for e in audit.history(client, settings, settings.model_name) if e.kind == "promote"]
    first, second = events[-2], events[-1]
    # serialised: the second promotion saw the first one's result, never the stale starting champion
    assert first.from_version == start
    assert second.from_version == first.to_version
    assert {first.to_version, second.to_version} == {a, b}
    assert str(version_by_alias(client, settings.model_name, CHAMPION).version) == second.to_version
    assert str(version_by_alias(client, settings.model_name, PREVIOUS_CHAMPION).version) == first.to_version


def test_unreachable_registry_is_a_clear_error_and_moves_nothing(tmp_path):
    settings = Settings(home=tmp_path / "empty")
    with pytest.raises(PromotionError, match="no version"):
        promote(settings)
