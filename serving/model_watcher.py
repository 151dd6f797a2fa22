"""Serving follows the registry: the active model is one immutable object, swapped atomically.

A background thread asks the registry every `SHOPRANK_RELOAD_SECONDS` (default 30) which version holds the
`champion` alias (and `challenger`, in shadow mode). When it changed, the new version is loaded beside the
old one; only once it is fully loaded does one reference assignment make it active, and the old one is
dropped when the last request using it finishes. A failed load keeps the old model serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from platform_common.registry import CHALLENGER, CHAMPION, connect, version_by_alias
from platform_common.settings import Settings
from serving.champion import LoadedModel, load_version
from serving.features.base import FeatureReader

log = logging.getLogger("shoprank.serving.watcher")


@dataclass(frozen=True)
class Active:
    """Everything one request needs, from one consistent moment of the registry."""

    model: LoadedModel
    reader: FeatureReader  # built for the model's feature service
    shadow: LoadedModel | None = None


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
        """Load and return a new Active if the aliases moved; None if nothing changed."""
        champion_v, challenger_v = alias_versions(self.settings, self.shadow)
        if champion_v is None:
            raise LookupError(f"registered model {self.settings.model_name} has no '{CHAMPION}' alias")
        same_champion = current is not None and current.model.version == champion_v
        current_shadow = current.shadow.version if current and current.shadow else None
        wanted_shadow = challenger_v if challenger_v != champion_v else None
        if same_champion and current_shadow == wanted_shadow:
            return None
        model = current.model if current is not None and same_champion else load_version(self.settings, champion_v)
        reader = current.reader if current is not None and same_champion else self.build_reader(model)
        shadow = None
        if wanted_shadow is not None:
            keep = current is not None and current_shadow == wanted_shadow
            shadow = current.shadow if current is not None and keep else load_version(self.settings, wanted_shadow)
        return Active(model=model, reader=reader, shadow=shadow)

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
                "now serving %s v%s (shadow: %s)",
                fresh.model.name,
                fresh.model.version,
                fresh.shadow.version if fresh.shadow else "-",
            )
        return True

    def _run(self) -> None:
        wait = self.interval if self.get_current() is not None else self.retry_interval
        while not self._stop.wait(wait):
            ok = self.poll()
            wait = self.interval if ok else self.retry_interval
