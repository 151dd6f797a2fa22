"""Plant the fifth incident of issue 19: a mis-calibrated challenger, registered beside the champion.

`python -m benchmarks.miscalibrated_challenger --factor 3` copies the champion's boosters, shifts the CTR head's
base margin by log(factor) (every pCTR about `factor` times the champion's, rankings unchanged within a
request), and registers the result as a new version of the ranker with the champion's tags (its frozen test
set, fingerprint, leakage guard). The gate refuses it (its CTR log loss is worse); `make promote FORCE=1
VERSION=<printed>` promotes it anyway, which is the incident. Its own reference profile is not logged, so
`make monitor` falls back to the version's frozen test set, as for any version trained before profiles existed.

`live_incident` is the whole incident on one state, for `make bench-monitor` and the tests: the champion serves
live shoppers (`make live`'s client, every request logged), the challenger is planted and promoted by force, the
running service picks it up, and it serves live shoppers in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow

from platform_common.registry import CHAMPION, connect, ensure_experiment, version_by_alias
from platform_common.settings import Settings, get_settings
from training.bundle import RankerBundle, write_artifacts
from training.promotion import load_ranker
from training.train import PIP_REQUIREMENTS

COPIED_TAGS = ("data_fingerprint", "feature_service", "test_set_path", "leakage_guard", "leakage_guard_reason")


def plant(factor: float, settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    client = connect(settings)
    champion = version_by_alias(client, settings.model_name, CHAMPION)
    if champion is None:
        raise SystemExit("no champion to copy: run `make train promote` first")
    bundle = load_ranker(settings, str(champion.version))
    assert bundle.spec is not None
    ctr = bundle.boosters["ctr"]
    base = float(json.loads(ctr.save_config())["learner"]["learner_model_param"]["base_score"].strip("[]"))
    shifted = 1 / (1 + math.exp(-(math.log(base / (1 - base)) + math.log(factor))))
    ctr.set_param({"base_score": shifted})
    with (
        tempfile.TemporaryDirectory() as tmp,
        mlflow.start_run(experiment_id=ensure_experiment(settings), run_name=f"miscalibrated-x{factor:g}"),
    ):
        artifacts = write_artifacts(Path(tmp), bundle.spec, bundle.boosters, bundle.config)
        if champion.run_id:  # the feature -> view map, as training logs it
            features = mlflow.artifacts.download_artifacts(
                run_id=champion.run_id, artifact_path="features.json", dst_path=str(Path(tmp) / "champion")
            )
            mlflow.log_dict(json.loads(Path(features).read_text()), "features.json")
        mlflow.set_tags({"planted_incident": f"miscalibrated challenger: pCTR x{factor:g} of v{champion.version}"})
        info = mlflow.pyfunc.log_model(
            name="ranker",
            python_model=RankerBundle(),
            artifacts=artifacts,
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=settings.model_name,
        )
    version = str(info.registered_model_version)
    for key in COPIED_TAGS:
        if key in champion.tags:
            client.set_model_version_tag(settings.model_name, version, key, champion.tags[key])
    client.set_model_version_tag(settings.model_name, version, "planted_incident", "miscalibrated")
    return version


@dataclass(frozen=True)
class LiveIncident:
    champion: str  # the version that served first
    challenger: str  # the planted one, promoted by force, that served next
    answered: tuple[int, int]  # live answers served by each
    started: float  # unix seconds: the first live request
    swapped: float  # unix seconds: the challenger answers every worker from here


def live_incident(
    settings: Settings, factor: float = 3.0, rate: float = 30.0, seconds: float = 30.0, seed: int = 0
) -> LiveIncident:
    """Champion, then the mis-calibrated challenger, each serving `seconds` of live shoppers at `rate` req/s."""
    from serving.launcher import holds_in_a_row, running_service
    from simulator.live.client import run_live
    from training.promotion import promote

    home = settings.home_dir
    env = {
        "SHOPRANK_REQUEST_LOG_RATE": "1",  # every answer logged: the monitor judges what was served
        "SHOPRANK_REQUEST_LOG_FLUSH_SECONDS": "1",
        "SHOPRANK_RELOAD_SECONDS": "2",
    }

    def served_version(url: str) -> str:
        return str(httpx.get(f"{url}/readyz", timeout=5).json()["model"]["version"])

    with running_service(settings, extra_env=env) as url:
        champion = served_version(url)
        started = time.time()
        first = asyncio.run(run_live(home / "raw", home / "oracle", url, rate=rate, seconds=seconds, seed=seed))
        challenger = plant(factor, settings)
        promote(settings, version=challenger, force=True)
        if not holds_in_a_row(lambda: served_version(url) == challenger, timeout=120):
            raise RuntimeError(f"the service did not switch to v{challenger} within 120 s")
        swapped = time.time()
        second = asyncio.run(run_live(home / "raw", home / "oracle", url, rate=rate, seconds=seconds, seed=seed + 1))
        time.sleep(3)  # the request log flushes every second
    return LiveIncident(champion, challenger, (first.answered, second.answered), started, swapped)


def land_pending(settings: Settings, hours: float) -> dict[str, int]:
    """Fast-forward the labels: land the live runs' pending clicks and orders that happen within `hours` from now,
    stamped as landed then (what a later `make live` would land, without waiting). Rows still pending."""
    from simulator.live.landing import LiveLanding, exclusive_run
    from simulator.live.world_store import load_world

    oracle = settings.home_dir / "oracle"
    later = int((time.time() + hours * 3600) * 1_000_000)
    with exclusive_run(oracle):
        landing = LiveLanding(settings.raw_dir, oracle, load_world(oracle), f"fast-forward-{later}", seed=0)
        return landing.close(later)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--factor", type=float, default=3.0)
    version = plant(parser.parse_args().factor)
    print(version)


if __name__ == "__main__":
    main()
