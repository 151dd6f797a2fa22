"""MLflow store creation must survive several processes touching a fresh SHOPRANK_HOME at once."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from platform_common.settings import Settings


def _connect_and_count(home: str, queue: mp.Queue) -> None:
    try:
        from training.registry import connect

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
