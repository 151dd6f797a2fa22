"""The real `feast` CLI, with the time spent inside `FeatureStore.materialize` written to $TIMED_FEAST_OUT.

`python -m benchmarks.timed_feast materialize <start> <end>` runs exactly what `feast materialize` runs (same
click command, same FeatureStore method, same engine); the wrapper only records wall and CPU time (all threads
of the process) around the materialization itself, so the benchmark can tell the CLI's fixed start-up (imports,
registry) from the work that scales with the rows.
"""

from __future__ import annotations

import json
import os
import time

from feast.feature_store import FeatureStore


def main() -> None:
    original = FeatureStore.materialize

    def timed(self, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            timings = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
            with open(os.environ["TIMED_FEAST_OUT"], "w") as out:
                json.dump(timings, out)

    FeatureStore.materialize = timed  # type: ignore[method-assign]
    from feast.cli.cli import cli

    cli(prog_name="feast")


if __name__ == "__main__":
    main()
