"""Load the registry's champion: the ranker bundle and the version it came from."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow.pyfunc

from platform_common.settings import Settings
from training.bundle import RankerBundle
from training.registry import CHAMPION, connect, version_by_alias


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    bundle: RankerBundle


def load_version(settings: Settings, version: str) -> LoadedModel:
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
    bundle = model.unwrap_python_model()
    if not isinstance(bundle, RankerBundle) or bundle.spec is None:
        raise TypeError(f"{settings.model_name} v{version} is not a ranker bundle")
    return LoadedModel(settings.model_name, str(version), bundle)


def load_champion(settings: Settings) -> LoadedModel:
    client = connect(settings)
    version = version_by_alias(client, settings.model_name, CHAMPION)
    if version is None:
        raise LookupError(f"registered model {settings.model_name} has no '{CHAMPION}' alias: run `make promote`")
    return load_version(settings, str(version.version))
