"""`make bench-train`: training time, peak memory and test AUC, the in-memory path beside the batched one.

Each path runs in its own child process (so its peak RSS is its own, `ru_maxrss`) on the same state folder:

- `in_memory`: Feast's point-in-time join returned whole to pandas (`to_df`), XGBoost from DMatrix: training as
  it was before issue 14 (`python -m training train --in-memory`);
- `batched`: the join persisted to parquet through Feast in chunks of days, sorted once by DuckDB, XGBoost
  from a DataIter into QuantileDMatrix (the default `make train`).

- `spark` (issue 15, `--paths batched,spark`; needs `make install-spark`): SHOPRANK_OFFLINE_ENGINE=spark on the
  same marts: Feast's Spark offline store persists the join, xgboost.spark trains the heads, Spark in local mode.
  It runs in `$SHOPRANK_HOME/bench-spark`, whose marts, raw zone and oracle are links to the home's (the very same
  files) and whose Feast registry holds SparkSources (`feast apply` with the spark engine, before the timing).

All do everything `make train` does up to the metrics (training set, frozen test rows, early-stopped heads,
CVR method, refit on train + valid, scoring the test rows against the oracle) but log nothing to MLflow; they
write the training set and test rows under $SHOPRANK_HOME/datasets as `make train` does. The run fails if the
paths did not train and test on the same rows (impression ids, in order). Prints a markdown table.
`--home` may be given several times (say a SCALE=small, medium and large home): the paths run on each in turn
and the table has a column per home and path (`--paths` applies to every home: leave the in-memory path out where
it would not fit). Peak RSS is the child's own `ru_maxrss`; `tree_peak_rss_gib` adds its child processes
(Spark's JVM), sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PATHS = ("in_memory", "batched")
ALL_PATHS = (*PATHS, "spark")
HEADLINE = (
    ("build_s", "training set s"),
    ("fit_s", "fit + refit s"),
    ("eval_s", "evaluation s"),
    ("total_s", "total s"),
    ("cpu_s", "total CPU s"),
    ("tree_cpu_s", "total CPU s with child processes"),
    ("peak_rss_gib", "peak RSS GiB"),
    ("tree_peak_rss_gib", "peak RSS with child processes GiB"),
    ("test_auc", "CTR test AUC"),
    ("cvr_test_auc", "CVR test AUC"),
    ("ctcvr_test_auc", "CTCVR test AUC"),
    ("oracle_auc", "CTR oracle AUC"),
)


def ids_digest(ids: Any) -> str:
    return hashlib.sha256("\n".join(str(i) for i in ids).encode()).hexdigest()[:16]


def child(path: str, home: Path) -> dict[str, Any]:
    """One path, start to metrics, in this process. Imports are here so that they count in this child's RSS."""
    import numpy as np
    import pandas as pd

    from platform_common.feast_config import get_feature_store
    from platform_common.settings import Settings
    from training import evaluation, oracle
    from training.bundle import RankerBundle, write_artifacts
    from training.config import TrainConfig
    from training.dataset import TrainingSet
    from training.train import fit, spark_fit, training_data
    from training.trainset import ParquetTrainingSet

    engine = "spark" if path == "spark" else "duckdb"
    settings = Settings(home=home, scale=os.environ.get("SHOPRANK_SCALE", "small"), offline_engine=engine)
    cfg = TrainConfig(in_memory=path == "in_memory")
    out: dict[str, Any] = {"path": path}
    tree_rss = TreeRss()
    t0 = time.perf_counter()
    data, test_path = training_data(get_feature_store(settings), settings, cfg)
    out["build_s"] = time.perf_counter() - t0
    out["negative_keep"] = float(getattr(data, "negative_keep", 1.0))

    if isinstance(data, TrainingSet):
        ids = {p: data.part(p)["impression_id"] for p in ("train", "valid", "test")}
    else:
        assert isinstance(data, ParquetTrainingSet)
        ids = {
            p: pd.concat(list(data.source([p]).frames(["impression_id"], 1 << 20)))["impression_id"]
            for p in ("train", "valid", "test")
        }
    out |= {f"{p}_rows": len(v) for p, v in ids.items()} | {f"{p}_ids": ids_digest(v) for p, v in ids.items()}
    out["label_rows"] = sum(len(v) for v in ids.values())
    del ids

    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fitted = fit(data, cfg, Path(tmp), spark=None if cfg.in_memory else spark_fit(settings))
        out["fit_s"] = time.perf_counter() - t1
        bundle = RankerBundle()
        bundle.load_from_paths(write_artifacts(Path(tmp) / "bundle", fitted.spec, fitted.boosters, fitted.config))
    t2 = time.perf_counter()
    test = pd.read_parquet(test_path)
    truth = oracle.load_truth(settings, test["impression_id"])
    eta = oracle.examination_eta(settings)
    value = oracle.top_slot_value(truth, test["surface"], test["position"], eta)
    scored = evaluation.score(bundle, test, truth, value)
    metrics = evaluation.classification_metrics(scored)
    out["eval_s"] = time.perf_counter() - t2
    out["total_s"] = time.perf_counter() - t0
    out |= {k: float(metrics[k]) for k in ("test_auc", "cvr_test_auc", "ctcvr_test_auc", "oracle_auc")}
    out |= {f"{h}_trees": b.num_boosted_rounds() for h, b in fitted.boosters.items()}
    out["cvr_method"] = fitted.config.cvr_method
    out["pctr_mean"] = float(np.mean(scored.logged["pctr"]))
    if isinstance(data, ParquetTrainingSet):
        data.remove()
    # Linux reports ru_maxrss in KiB: the peak resident set of this process, DuckDB's and XGBoost's included.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["peak_rss_gib"] = usage.ru_maxrss / 2**20
    # CPU seconds of all the process's threads: on a shared machine wall time measures the neighbours too.
    out["cpu_s"] = usage.ru_utime + usage.ru_stime
    out["tree_peak_rss_gib"] = tree_rss.stop() / 2**30
    # + the CPU of the child processes (Spark's JVM, its Python workers), which ru_utime does not count
    out["tree_cpu_s"] = out["cpu_s"] + sum(tree_rss.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")
    return out


class TreeRss:
    """Peak resident set of this process and its descendants (Spark's JVM and its Python workers are children),
    and their CPU seconds (each process's last sampled utime + stime), from /proc every 0.2 s."""

    def __init__(self) -> None:
        self.peak = 0
        self.cpu_ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> int:
        parents: dict[int, int] = {}
        rss: dict[int, int] = {}
        ticks: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
                rss[int(entry.name)] = int(fields[21]) * resource.getpagesize()
                ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
            except (OSError, ValueError, IndexError):
                continue  # a process that ended while listed
        tree, frontier = {os.getpid()}, [os.getpid()]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
            tree.update(children)
            frontier.extend(children)
        for pid in tree - {os.getpid()}:
            self.cpu_ticks[pid] = max(self.cpu_ticks.get(pid, 0), ticks.get(pid, 0))
        return sum(rss.get(pid, 0) for pid in tree)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self._sample())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._sample())


def prepare_spark_home(home: Path) -> Path:
    """`home/bench-spark`: links to the home's marts, raw zone and oracle, and a Feast registry of SparkSources."""
    spark_home = home / "bench-spark"
    spark_home.mkdir(exist_ok=True)
    for folder in ("marts", "merchant_growth", "raw", "oracle"):
        link = spark_home / folder
        if not link.exists():
            link.symlink_to(home / folder, target_is_directory=True)
    from platform_common.feast_config import render_feature_store_yaml
    from platform_common.settings import FEATURE_REPO_DIR, Settings

    settings = Settings(home=spark_home, offline_engine="spark")
    env = dict(os.environ) | {
        "SHOPRANK_HOME": str(spark_home),
        "SHOPRANK_OFFLINE_ENGINE": "spark",
        "FEAST_FS_YAML_FILE_PATH": str(render_feature_store_yaml(settings)),
    }
    feast = Path(sys.executable).parent / "feast"
    proc = subprocess.run([str(feast), "apply"], cwd=FEATURE_REPO_DIR, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"feast apply with the spark engine failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return spark_home


def run_child(path: str, home: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.train", "--child", path, "--home", str(home)],
        capture_output=True,
        text=True,
        env=dict(os.environ) | {"SHOPRANK_HOME": str(home)},
    )
    if proc.returncode != 0:
        raise SystemExit(f"{path} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: list[dict[str, Any]]) -> str:
    heads = [f"{r['path']}, {r['label_rows'] / 1e6:.1f}M rows" for r in results]
    lines = ["| | " + " | ".join(heads) + " |", "|---|" + "--:|" * len(results)]
    for key, label in HEADLINE:
        cells = [f"{r[key]:.4f}" if "auc" in key else f"{r[key]:.1f}" if key.endswith("_s") else f"{r[key]:.2f}"
                 for r in results]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| negatives kept | " + " | ".join(f"{r['negative_keep']:.3f}" for r in results) + " |")
    for key in ("train_rows", "valid_rows", "test_rows", "ctr_trees", "cvr_trees", "ctcvr_trees", "cvr_method"):
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(f"{r[key]:,}" if isinstance(r[key], int)
                                                              else str(r[key]) for r in results) + " |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, action="append", help="a state folder (repeat for several sizes; "
                        "default: $SHOPRANK_HOME)")  # fmt: skip
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated, run in this order: in_memory, "
                        "batched, spark (the Spark engine: needs `make install-spark`)")  # fmt: skip
    parser.add_argument("--child", choices=ALL_PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    homes = [h.resolve() for h in args.home or [Path(os.environ.get("SHOPRANK_HOME", ".state"))]]
    if args.child:
        print(json.dumps(child(args.child, homes[0])))
        return
    paths = args.paths.split(",")
    unknown = sorted(set(paths) - set(ALL_PATHS))
    if unknown:
        raise SystemExit(f"--paths: unknown {unknown}; choose from {', '.join(ALL_PATHS)}")
    results = []
    for home in homes:
        of_home = []
        for path in paths:
            print(f"running {path} on {home} ...", file=sys.stderr, flush=True)
            of_home.append(run_child(path, prepare_spark_home(home) if path == "spark" else home))
            print(json.dumps(of_home[-1]), file=sys.stderr, flush=True)
        digests = {tuple(r[f"{p}_ids"] for p in ("train", "valid", "test")) for r in of_home}
        if len(digests) != 1:
            raise SystemExit(f"the paths did not train and test on the same rows of {home}: " + json.dumps(of_home))
        results += of_home
    print(table(results))


if __name__ == "__main__":
    main()
