"""Promotion that a team can trust: gate, refusal reasons, force, audit, rollback, and no half-moved aliases."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import mlflow
import pytest

from platform_common.registry import CHALLENGER, CHAMPION, connect, registered_model, version_by_alias
from platform_common.settings import REPO_ROOT, Settings
from training import audit
from training.online_gate import EvidenceError, OnlineRule
from training.promotion import PREVIOUS_CHAMPION, PromotionError, PromotionPolicy, promote, rollback

from .summaries import summary_dict

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


# --- promotion on online evidence (`make promote EXPERIMENT=<id>`) -----------------------------------------

EXPERIMENT = "gmv-online"
EQUAL = PromotionPolicy(min_auc_gain=-0.001)  # the clone equals the champion offline: only the online part judges


def start_experiment(settings: Settings, treatment: str, experiment_id: str = EXPERIMENT) -> None:
    """Through the service's own store, as `make experiment-start` does."""
    from serving.experiments import store
    from serving.experiments.model import build

    arms = f"control=champion,treatment=v{treatment}"
    store.start(settings, build(experiment_id, "ab", arms, None, datetime.now(UTC), None, created_by="test"))


def write_summary(settings: Settings, text: str | dict[str, Any], experiment_id: str = EXPERIMENT) -> None:
    """A hand-written `summary.json`, where `make experiment-report` writes it."""
    folder = settings.experiments_dir / experiment_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(text if isinstance(text, str) else json.dumps(text))


def evidence(candidate: str, champion: str, **kw: Any) -> dict[str, Any]:
    """A summary of EXPERIMENT whose arms served the candidate and the champion, `kw` overriding the rest."""
    return summary_dict(
        **({"experiment_id": EXPERIMENT, "treatment_version": candidate, "control_version": champion} | kw)
    )


@pytest.fixture()
def experiment(registry):
    """A candidate (a clone of the champion) in an A/B against the champion; the summary is up to each test."""
    settings, client = registry
    champion = str(version_by_alias(client, settings.model_name, CHAMPION).version)
    candidate = clone_champion(settings, client)
    start_experiment(settings, candidate)
    return settings, client, champion, candidate


def test_a_significant_online_lift_promotes_and_the_evidence_is_audited(experiment):
    settings, client, champion, candidate = experiment
    write_summary(settings, evidence(candidate, champion, lift=0.04, ci=(0.01, 0.07), srm=0.52))
    decision = promote(settings, EQUAL, experiment=EXPERIMENT)
    assert decision.promoted, decision.reason
    assert f"online in experiment {EXPERIMENT} (superior): GMV/request lift +4.00% [+1.00%, +7.00%]" in decision.reason
    assert str(version_by_alias(client, settings.model_name, CHAMPION).version) == candidate
    tags = client.get_model_version(settings.model_name, candidate).tags
    assert tags["promotion_experiment"] == EXPERIMENT
    online = json.loads(tags["promotion_online"])
    assert (online["lift"], online["ci_low"], online["ci_high"], online["srm_p_value"]) == (0.04, 0.01, 0.07, 0.52)
    last = audit.history(client, settings, settings.model_name)[-1]
    assert (last.kind, last.to_version, last.experiment) == ("promote", candidate, EXPERIMENT)
    assert last.metrics["online"] == online and online["p_value"] == 0.01 and online["rule"] == "superior"


# each refusal: what the summary says, and the failed check that must be named in the reason
REFUSALS = [
    ("lift negative", {"lift": -0.03, "ci": (-0.05, -0.01)}, "online GMV/request lift: -3.00% [-5.00%, -1.00%]"),
    ("interval straddling zero", {"lift": 0.01, "ci": (-0.01, 0.03)}, "(superior: needs ci_low > 0)"),
    (
        "guardrail failed",
        {"guardrails": [{"name": "error_rate", "passed": False, "detail": "treatment 2.1% > 1%"}]},
        "guardrail error_rate: treatment 2.1% > 1%",
    ),
    (
        "wrong version",
        {"treatment_version": "9"},
        "experiment tested the candidate: treatment arm 'treatment' served v9; the candidate is",
    ),
    ("not readable", {"readable": False}, "experiment readable: 4,000 of 10,000 requests"),
]


def test_online_evidence_that_falls_short_is_refused_and_recorded(experiment):
    """One registry for every case: a refusal moves no champion, so each case starts from the same one."""
    settings, client, champion, candidate = experiment
    for case, kw, says in REFUSALS:
        write_summary(settings, evidence(candidate, champion, **kw))
        decision = promote(settings, EQUAL, experiment=EXPERIMENT)
        assert not decision.promoted, case
        assert decision.reason.startswith("refused: ") and says in decision.reason, (case, decision.reason)
        failed = [name for name, ok, _ in decision.checks if not ok]
        assert len(failed) == 1, (case, failed)  # the offline gate passed: the refusal is the online evidence's
        assert str(version_by_alias(client, settings.model_name, CHAMPION).version) == champion, case
        last = audit.history(client, settings, settings.model_name)[-1]
        assert (last.kind, last.experiment, last.reason) == ("refuse", EXPERIMENT, decision.reason), case

    # the straddling interval is refused as superior, but passes the documented non-inferior rule
    write_summary(settings, evidence(candidate, champion, lift=0.01, ci=(-0.01, 0.03)))
    decision = promote(settings, EQUAL, experiment=EXPERIMENT, online_rule=OnlineRule.NON_INFERIOR)
    assert decision.promoted, decision.reason
    assert "(non-inferior): GMV/request lift +1.00% [-1.00%, +3.00%]" in decision.reason


def _state(settings: Settings, client) -> tuple:
    """Everything a promotion could change: aliases, every version's tags, the audit history."""
    model = registered_model(client, settings.model_name)
    versions = client.search_model_versions(f"name = '{settings.model_name}'")
    return (
        dict(model.aliases),
        {str(v.version): dict(v.tags) for v in versions},
        len(audit.history(client, settings, settings.model_name)),
    )


# (experiment id, what summary.json holds (None: no file), the error's words)
BAD_EVIDENCE = [
    ("never-started", None, "no experiment 'never-started' on shoprank_ranker"),
    ("../../etc", None, "experiment id '../../etc' is not an id"),
    (EXPERIMENT, None, f"no analysis for experiment '{EXPERIMENT}'"),
    (EXPERIMENT, "{not json", "summary.json is not JSON: Expecting property name"),
    (EXPERIMENT, {"id": EXPERIMENT, "design": "ab"}, "summary.json: field control: Field required"),
    (EXPERIMENT, summary_dict(experiment_id="other"), "field id is 'other', not 'gmv-online'"),
    (
        EXPERIMENT,
        summary_dict(experiment_id=EXPERIMENT) | {"treatment": "b"},
        "field treatment names arm 'b', which is not in arms",
    ),
]


def test_bad_evidence_is_a_one_line_error_exit_2_and_changes_nothing(experiment):
    """One registry for every case (nothing changes, so each starts from the same state), then the CLI's exit."""
    settings, client, _, _ = experiment
    summary = settings.experiments_dir / EXPERIMENT / "summary.json"
    before = _state(settings, client)
    for experiment_id, text, error in BAD_EVIDENCE:
        summary.unlink(missing_ok=True)
        if text is not None:
            write_summary(settings, text)
        with pytest.raises(EvidenceError) as raised:
            promote(settings, EQUAL, experiment=experiment_id)
        assert error in str(raised.value) and "\n" not in str(raised.value), (error, str(raised.value))
        assert _state(settings, client) == before, error

    summary.unlink()
    env = dict(os.environ) | {"SHOPRANK_HOME": str(settings.home_dir), "COLUMNS": "60"}  # narrow: no wrapping
    proc = subprocess.run(
        [sys.executable, "-m", "training", "promote", "--experiment", EXPERIMENT],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("promotion failed, no alias moved: no analysis for experiment 'gmv-online'"), lines
    assert _state(settings, client) == before
