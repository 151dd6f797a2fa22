"""The forecast's champion alias moves under the registry's promotion lock, the one ranker promotions hold."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from merchant_growth.forecast_config import MODEL_NAME
from merchant_growth.forecast_registry import ForecastDecision, promote_forecast
from platform_common.registry import CHAMPION, PROMOTION_LOCK, connect, move_aliases, registry_lock, version_by_alias
from platform_common.settings import Settings

HELD_SECONDS = 5.0


def test_forecast_promotion_waits_for_the_promotion_lock(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", scale="tiny")
    client = connect(settings)
    client.create_registered_model(MODEL_NAME)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    # No champion yet: the gate promotes without loading the model, so an empty version is enough here.
    client.create_model_version(MODEL_NAME, artifacts.as_uri())
    result: list[ForecastDecision] = []
    errors: list[BaseException] = []

    def promote() -> None:
        try:
            result.append(promote_forecast(settings))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    worker = threading.Thread(target=promote, daemon=True)
    with registry_lock(settings, PROMOTION_LOCK):  # as a ranker promotion in another process would
        worker.start()
        worker.join(HELD_SECONDS)
        assert worker.is_alive(), "the forecast promotion did not wait for the promotion lock"
        assert version_by_alias(client, MODEL_NAME, CHAMPION) is None
    worker.join(60)
    assert not worker.is_alive() and not errors, errors
    assert result[0].promoted and result[0].candidate == "1"
    assert str(version_by_alias(client, MODEL_NAME, CHAMPION).version) == "1"


def test_aliases_cannot_move_once_the_lock_is_released(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", scale="tiny")
    connect(settings).create_registered_model(MODEL_NAME)
    with move_aliases(settings, MODEL_NAME) as aliases:
        pass
    with pytest.raises(RuntimeError, match="after the promotion lock was released"):
        aliases.set(CHAMPION, "1")
