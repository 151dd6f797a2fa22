"""Serving follows the registry: the active model is one immutable object, swapped atomically.

A background thread asks the registry every `SHOPRANK_RELOAD_SECONDS` (default 30) which version holds the
`champion` alias (and `challenger`, in shadow mode). When it changed, the new version is loaded beside the
old one; only once it is fully loaded does one reference assignment make it active, and the old one is
dropped when the last request using it finishes. A failed load keeps the old model serving.

The same poll reads the experiments stored on the registered model (serving/experiments/store.py): the one
running now, or the next to start, is loaded with a model per arm (serving/experiments/live.py) and becomes
part of the same Active, swapped in the same single assignment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from platform_common.registry import CHALLENGER, CHAMPION, connect, registered_model, version_by_alias
from platform_common.settings import Settings
from serving.champion import LoadedModel, load_version
from serving.experiments.live import LiveExperiment, load_live
from serving.experiments.store import current, parse_tags
from serving.features.base import FeatureReader

log = logging.getLogger("shoprank.serving.watcher")


@dataclass(frozen=True)
class Active:
    """Everything one request needs, from one consistent moment of the registry."""

    model: LoadedModel
    reader: FeatureReader  # built for the model's feature service
    shadow: LoadedModel | None = None
    experiment: LiveExperiment | None = None  # running or next to start; None: the hot path checks only this


def alias_versions(settings: Settings, shadow: bool) -> tuple[str | None, str | None]:
    client = connect(settings)
    champion = version_by_alias(client, settings.model_name, CHAMPION)
    challenger = version_by_alias(client, settings.model_name, CHALLENGER) if shadow else None
    return (str(champion.version) if champion else None, str(challenger.version) if challenger else None)


class RegistryWatcher:
    def __init__(
        self,
        settings: Settings,
        build_reader: Callable[[LoadedModel], FeatureReader],
        get_current: Callable[[], Active | None],
        on_change: Callable[[Active], None],
        on_error: Callable[[str], None],
        interval: float,
        retry_interval: float,
        shadow: bool,
    ) -> None:
        self.settings = settings
        self.build_reader = build_reader
        self.get_current = get_current
        self.on_change = on_change
        self.on_error = on_error
        self.interval = interval
        self.retry_interval = retry_interval
        self.shadow = shadow
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self, current: Active | None) -> Active | None:
        """Load and return a new Active if the aliases or the experiment moved; None if nothing changed."""
        champion_v, challenger_v = alias_versions(self.settings, self.shadow)
        if champion_v is None:
            raise LookupError(f"registered model {self.settings.model_name} has no '{CHAMPION}' alias")
        same_champion = current is not None and current.model.version == champion_v
        current_shadow = current.shadow.version if current and current.shadow else None
        wanted_shadow = challenger_v if challenger_v != champion_v else None
        if current is not None and same_champion:
            model = current.model
        else:  # a new champion an experiment arm already holds is not loaded twice
            model = self._held_by_experiment(current, champion_v) or load_version(self.settings, champion_v)
        reader = current.reader if current is not None and same_champion else self.build_reader(model)
        shadow = None
        if wanted_shadow is not None:
            keep = current is not None and current_shadow == wanted_shadow
            shadow = current.shadow if current is not None and keep else load_version(self.settings, wanted_shadow)
        experiment = self.check_experiment(model, current.experiment if current is not None else None)
        parts = (model, reader, shadow, experiment)
        if current is not None and all(
            new is old
            for new, old in zip(parts, (current.model, current.reader, current.shadow, current.experiment), strict=True)
        ):
            return None  # every part is the object already serving: nothing to swap
        return Active(model=model, reader=reader, shadow=shadow, experiment=experiment)

    @staticmethod
    def _held_by_experiment(current: Active | None, version: str) -> LoadedModel | None:
        if current is None or current.experiment is None:
            return None
        held = (a.model for a in current.experiment.arms.values() if a.fallback is None and a.model.version == version)
        return next(held, None)

    def check_experiment(self, champion: LoadedModel, previous: LiveExperiment | None) -> LiveExperiment | None:
        """The experiment to hold now, loaded (`previous` itself if nothing about it changed)."""
        stored = registered_model(connect(self.settings), self.settings.model_name)
        if stored is None:
            return None
        experiments, errors = parse_tags(stored.tags)
        for error in errors:
            log.warning("unreadable experiment skipped: %s", error)
        definition = current(experiments, datetime.now(UTC))
        if definition is None:
            return None
        return load_live(self.settings, definition, stored.aliases, champion, previous, load_version)

    def poll(self) -> bool:
        """One registry check; True if the active model is (still) usable."""
        current = self.get_current()
        try:
            fresh = self.check(current)
        except Exception as exc:  # registry down, bad version: keep serving what we have, say why
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "registry check failed (%s): %s",
                "keeping the active model" if current else "not ready",
                self.last_error,
            )
            self.on_error(self.last_error)
            return current is not None
        self.last_error = ""
        if fresh is not None:
            self.on_change(fresh)
            log.info(
                "now serving %s v%s (shadow: %s, experiment: %s)",
                fresh.model.name,
                fresh.model.version,
                fresh.shadow.version if fresh.shadow else "-",
                fresh.experiment.definition.id if fresh.experiment else "-",
            )
        return True

    def _run(self) -> None:
        wait = self.interval if self.get_current() is not None else self.retry_interval
        while not self._stop.wait(wait):
            ok = self.poll()
            wait = self.interval if ok else self.retry_interval
