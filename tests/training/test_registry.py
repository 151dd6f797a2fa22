"""The shared registry module: store creation survives several processes touching a fresh SHOPRANK_HOME at once,
and the one loader says what is wrong with what it was asked to load."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import mlflow.pyfunc
import pytest

from platform_common.registry import CHAMPION, connect, load_bundle
from platform_common.settings import Settings
from training.bundle import RankerBundle


def _connect_and_count(home: str, queue: mp.Queue) -> None:
    try:
        client = connect(Settings(home=Path(home)))
        queue.put(("ok", len(client.search_registered_models())))
    except Exception as exc:  # reported to the parent, which asserts on it
        queue.put(("error", repr(exc)))


def test_parallel_first_connections_do_not_race(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")  # fresh interpreters, like BentoML's workers
    queue = ctx.Queue()
    procs = [ctx.Process(target=_connect_and_count, args=(str(tmp_path), queue)) for _ in range(4)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert results == [("ok", 0)] * 4, results
    assert (tmp_path / "mlflow" / "mlflow.db").exists()


class _NotARanker(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return model_input


@pytest.mark.filterwarnings("ignore:Add type hints")  # the stand-in model needs none
def test_load_bundle_names_what_is_wrong(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    client = connect(settings)
    name = "some_model"
    client.create_registered_model(name)
    saved = tmp_path / "saved"
    mlflow.pyfunc.save_model(saved, python_model=_NotARanker(), pip_requirements=[])
    client.create_model_version(name, saved.as_uri())
    client.set_registered_model_alias(name, CHAMPION, "1")

    loaded = load_bundle(settings, name, CHAMPION, _NotARanker)
    assert (loaded.name, loaded.version, type(loaded.bundle)) == (name, "1", _NotARanker)
    with pytest.raises(TypeError, match=r"some_model v1 holds a _NotARanker, not a RankerBundle"):
        load_bundle(settings, name, "1", RankerBundle)
    with pytest.raises(LookupError, match=r"some_model has no 'challenger' alias"):
        load_bundle(settings, name, "challenger", _NotARanker)
    with pytest.raises(LookupError, match=r"some_model has no version 7"):
        load_bundle(settings, name, "7", _NotARanker)
