"""Plant the fifth incident of issue 19: a mis-calibrated challenger, registered beside the champion.

`python -m benchmarks.miscalibrated_challenger --factor 3` copies the champion's boosters, shifts the CTR head's
base margin by log(factor) (every pCTR about `factor` times the champion's, rankings unchanged within a
request), and registers the result as a new version of the ranker with the champion's tags (its frozen test
set, fingerprint, leakage guard). The gate refuses it (its CTR log loss is worse); `make promote FORCE=1
VERSION=<printed>` promotes it anyway, which is the incident. Its own reference profile is not logged, so
`make monitor` falls back to the version's frozen test set, as for any version trained before profiles existed.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import mlflow

from platform_common.registry import CHAMPION, connect, ensure_experiment, version_by_alias
from platform_common.settings import get_settings
from training.bundle import RankerBundle, write_artifacts
from training.promotion import load_ranker
from training.train import PIP_REQUIREMENTS

COPIED_TAGS = ("data_fingerprint", "feature_service", "test_set_path", "leakage_guard", "leakage_guard_reason")


def plant(factor: float) -> str:
    settings = get_settings()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--factor", type=float, default=3.0)
    version = plant(parser.parse_args().factor)
    print(version)


if __name__ == "__main__":
    main()
