"""The stream processor killed mid-batch and restarted, on the embedded SQLite stream (issue 17, section 5).

A temporary SHOPRANK_HOME gets `feast apply` of the real feature repo (SQLite online store). The seeded events of
tests/transforms/stream_fault_data.py are published, then the real processor process is SIGKILLed three times by
its failpoints (after logging and pushing a batch, after checkpointing it: before the acknowledgement) and once
from outside at an arbitrary point, and finally runs until the stream is drained. The online store, the log's
newest row per entity, the engine's counts (accepted, late, duplicate, each malformed reason) and the quarantine
equal an uninterrupted run's over the same payloads: no event lost, none counted twice, no crash on the malformed
ones.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from platform_common.event_stream.sqlite_stream import SqliteStream
from platform_common.feast_config import get_feature_store, render_feature_store_yaml
from platform_common.settings import FEATURE_REPO_DIR, Settings
from platform_common.stream_log import PRODUCT_VIEW, USER_VIEW
from tests.transforms.stream_fault_data import (
    assert_same_features,
    clean_run,
    crash_runs,
    kill_midstream,
    payloads,
    quarantine_of,
    replayed_rows,
    run_processor,
)
from transforms.streaming.metrics import metrics_path
from transforms.streaming.processor import GROUP, checkpoint_path, load_checkpoint

pytestmark = pytest.mark.integration


def test_processor_killed_mid_batch_loses_and_double_counts_nothing(tmp_path: Path) -> None:
    seed = 3  # tests/prod/test_stream_faults.py runs other seeds on Redis
    home = tmp_path / "home"
    settings = Settings(home=home)
    env = dict(os.environ, SHOPRANK_HOME=str(home), SHOPRANK_PROFILE="local")
    env["FEAST_FS_YAML_FILE_PATH"] = str(render_feature_store_yaml(settings))
    feast = str(Path(sys.executable).with_name("feast"))
    subprocess.run([feast, "apply"], cwd=FEATURE_REPO_DIR, env=env, check=True, capture_output=True)

    events = payloads(seed)
    clean, clean_quarantine = clean_run(tmp_path / "clean", events)
    stream = SqliteStream(settings.stream_dir / "events.db")
    stream.publish_raw(events)

    crash_runs(env)
    kill_midstream(env, settings.stream_dir)
    assert stream.lag(GROUP) > 0, "the stream was drained before the last kill: it did not land mid-stream"
    final = run_processor(env, "--until-drained")
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]

    assert stream.lag(GROUP) == 0
    state = load_checkpoint(checkpoint_path(settings.stream_dir, GROUP))
    assert state.engine.counts == clean.counts  # accepted, late, duplicate, malformed_*: each exactly once
    assert clean.counts["late"] and clean.counts["duplicate"] and clean.counts["malformed_not_json"]
    assert quarantine_of(settings.stream_dir) == clean_quarantine
    assert_same_features(get_feature_store(settings), settings.stream_log_dir, clean)
    # the crash after the push replayed its batch: same values, later visible time
    assert replayed_rows(settings.stream_log_dir) > 0
    # the last process's Prometheus textfile: caught up, both views pushed (a finite freshness), what it read
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics_path(settings.stream_dir, "p1").read_text())
        for s in family.samples
    }
    assert got[("shoprank_stream_consumer_lag_events", (("group", GROUP),))] == 0
    for view in (USER_VIEW, PRODUCT_VIEW):
        assert math.isfinite(got[("shoprank_stream_feature_freshness_seconds", (("view", view),))])
    assert sum(v for (name, _), v in got.items() if name == "shoprank_stream_events_total") > 0
