"""Experiments stored as registered-model tags in a real MLflow SQLite registry: start, list, stop, refusals
that change nothing, the audit history, a fresh client, and the CLI's one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from platform_common.registry import connect, registered_model
from platform_common.settings import Settings
from serving.experiments import store
from serving.experiments.cli import app
from serving.experiments.model import ExperimentError, build
from training import audit

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Settings:
    """A registered ranker with versions 1 and 2 (1 is champion): an MLflow SQLite registry, no artifacts needed."""
    home = tmp_path_factory.mktemp("experiments-registry")
    settings = Settings(home=home, scale="tiny")
    client = connect(settings)
    client.create_registered_model(settings.model_name)
    for _ in range(2):
        client.create_model_version(settings.model_name, source=str(home), run_id=None)
    client.set_registered_model_alias(settings.model_name, "champion", "1")
    return settings


@pytest.fixture()
def clean(registry) -> Iterator[Settings]:
    yield registry
    client = connect(registry)
    for key in registered_model(client, registry.model_name).tags:
        if key.startswith(store.TAG_PREFIX):
            client.delete_registered_model_tag(registry.model_name, key)


def experiment(id: str = "exp1", arms: str = "control=champion:0.5,treatment=v2:0.5", **kw):
    return build(id, kw.pop("design", "ab"), arms, kw.pop("salt", None), kw.pop("start", NOW), kw.pop("stop", None))


def tags(settings: Settings) -> dict[str, str]:
    return dict(registered_model(connect(settings), settings.model_name).tags)


def refused(call, needle: str, settings: Settings) -> None:
    before = tags(settings)
    with pytest.raises(ExperimentError) as info:
        call()
    assert needle in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert tags(settings) == before  # nothing changed


def test_start_list_stop_round_trip_survives_a_new_client(clean):
    settings = clean
    started = store.start(settings, experiment(stop=NOW + timedelta(days=1)))
    again = store.list_experiments(settings, client=connect(settings))  # a fresh client reads it back
    assert again == [started]
    assert store.get(settings, "exp1") == started
    stopped = store.stop(settings, "exp1", by="tester")
    assert stopped.stopped_at is not None and stopped.stopped_by == "tester" and stopped.finished(datetime.now(UTC))
    assert store.list_experiments(settings) == [stopped]
    kinds = [e.kind for e in audit.history(connect(settings), settings, settings.model_name)]
    assert kinds[-2:] == ["experiment_start", "experiment_stop"]
    last = audit.history(connect(settings), settings, settings.model_name)[-1]
    assert last.metrics["experiment"]["id"] == "exp1" and "stopped exp1" in last.reason
    assert {e.experiment for e in audit.history(connect(settings), settings, settings.model_name)[-2:]} == {"exp1"}


def test_refusals_change_nothing(clean):
    settings = clean
    refused(lambda: store.start(settings, experiment(arms="a=champion:0.5,b=v9:0.5")), "has no version 9", settings)
    refused(
        lambda: store.start(settings, experiment(arms="a=champion:0.5,b=nosuch:0.5")), "no alias 'nosuch'", settings
    )
    refused(lambda: store.stop(settings, "never-started"), "no experiment 'never-started' to stop", settings)
    store.start(settings, experiment())  # open-ended, running now
    refused(lambda: store.start(settings, experiment("exp2")), "overlaps 'exp1'", settings)
    later = NOW + timedelta(days=30)
    refused(lambda: store.start(settings, experiment("exp2", start=later)), "overlaps 'exp1'", settings)
    refused(lambda: store.start(settings, experiment("exp1", start=later)), "'exp1' already exists", settings)
    store.stop(settings, "exp1")
    refused(lambda: store.stop(settings, "exp1"), "'exp1' already stopped at", settings)
    # Once it is stopped, the next one may start (from now on: its window must not reach back into exp1's).
    refused(lambda: store.start(settings, experiment("exp2")), "overlaps 'exp1'", settings)
    then = datetime.now(UTC)
    assert store.start(settings, experiment("exp2", design="interleaving", start=then)).design == "interleaving"


def test_scheduled_experiments_and_which_one_the_service_holds(clean):
    settings = clean
    week = timedelta(days=7)
    store.start(settings, experiment("first", start=NOW + week, stop=NOW + 2 * week))
    store.start(settings, experiment("second", start=NOW + 2 * week))  # starts as the first ends
    stored = store.list_experiments(settings)
    assert [e.id for e in stored] == ["first", "second"]
    assert store.current(stored, NOW).id == "first"  # the next to start
    assert store.current(stored, NOW + week).id == "first"
    assert store.current(stored, NOW + 2 * week).id == "second"
    cancelled = store.stop(settings, "first")  # before it started
    later = datetime.now(UTC)
    assert not cancelled.running(NOW + week) and store.current(store.list_experiments(settings), later).id == "second"


def test_an_unreadable_tag_is_skipped_not_fatal(clean):
    settings = clean
    connect(settings).set_registered_model_tag(settings.model_name, store.TAG_PREFIX + "broken", '{"id": 1}')
    store.start(settings, experiment("fine", start=NOW + timedelta(days=365)))
    experiments, errors = store.parse_tags(tags(settings))
    assert [e.id for e in experiments] == ["fine"] and len(errors) == 1 and "broken" in errors[0]


def test_cli_starts_lists_stops_and_refuses_in_one_line(clean, monkeypatch):
    settings = clean
    monkeypatch.setenv("SHOPRANK_HOME", str(settings.home_dir))
    runner = CliRunner()
    ok = runner.invoke(app, ["start", "--id", "cli1", "--arms", "control=champion:0.5,treatment=v2:0.5"])
    assert ok.exit_code == 0, ok.output
    assert "STARTED cli1" in ok.output
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0 and "cli1" in listed.output and "running" in listed.output
    shown = runner.invoke(app, ["show", "cli1"])
    assert shown.exit_code == 0 and '"salt": "cli1"' in shown.output
    for args, needle in [
        (["start", "--id", "cli2", "--arms", "a=champion:0.6,b=v2:0.6"], "arm shares must sum to 1, got 1.2"),
        (["start", "--id", "cli2", "--arms", "a=champion,b=v2"], "overlaps 'cli1'"),
        (["start", "--id", "cli2", "--arms", "a=champion,b=v2", "--design", "xyz"], "design 'xyz' is not one of"),
        (["start", "--id", "cli2", "--arms", "a=champion,b=v2", "--start", "tomorrow"], "is not an ISO time"),
        (["stop", "nope"], "no experiment 'nope' to stop"),
    ]:
        before = tags(settings)
        bad = runner.invoke(app, args)
        assert bad.exit_code == 2, bad.output
        lines = bad.output.strip().splitlines()
        assert len(lines) == 1 and "refused, nothing changed" in lines[0] and needle in lines[0], bad.output
        assert tags(settings) == before
    stopped = runner.invoke(app, ["stop", "cli1"])
    assert stopped.exit_code == 0 and "STOPPED cli1" in stopped.output


def test_a_definition_longer_than_the_registry_stores_is_refused(clean):
    settings = clean
    arms = ",".join(f"arm_{i:03d}_{'x' * 20}=champion" for i in range(150))  # about 9,000 characters as JSON
    refused(lambda: store.start(settings, experiment("huge", arms=arms)), "the registry stores 5000", settings)
