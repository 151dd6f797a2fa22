"""Load the registry's champion: the ranker bundle and the version it came from."""

from __future__ import annotations

from dataclasses import dataclass

from platform_common.registry import CHAMPION, load_bundle
from platform_common.settings import Settings
from training.bundle import RankerBundle


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    bundle: RankerBundle


def load_version(settings: Settings, version: str) -> LoadedModel:
    """`version` is a number or an alias; the result names the number it resolved to."""
    loaded = load_bundle(settings, settings.model_name, str(version), RankerBundle)
    if loaded.bundle.spec is None:  # a bundle whose artifacts never loaded cannot build a feature matrix
        raise TypeError(f"{settings.model_name} v{loaded.version} is a ranker bundle without a feature spec")
    return LoadedModel(settings.model_name, loaded.version, loaded.bundle)


def load_champion(settings: Settings) -> LoadedModel:
    try:
        return load_version(settings, CHAMPION)
    except LookupError as exc:
        raise LookupError(f"{exc}: run `make promote`") from exc
