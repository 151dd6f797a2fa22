"""Point-in-time join: Feast's DuckDB join, the ASOF-join plugin and a hand-written ASOF join, on the same rows.

    python -m benchmarks.point_in_time --home /tmp/bench [--rounds 2] [--rows N] [--paths feast,plugin,...]

The entity rows are the impression_labels mart of the state folder (all of it, or a fixed sample of --rows),
joined to the model's feature service (ctr_model_v1) with `filter_by_created_timestamp=True`, as training does.
Paths, each timed in a fresh child process so peak RSS (ru_maxrss) is its own:

- `feast`          Feast's stock DuckDBOfflineStore (`offline_store: type: duckdb`), `get_historical_features
                   (...).to_df()`: the join as it was before the plugin;
- `plugin`         the same call through platform_common.feast_offline_store (the configured store), `.to_df()`;
- `plugin-parquet` the same job's `.persist(SavedDatasetFileStorage(path))`: DuckDB `COPY ... TO` a parquet
                   file sorted by (event_timestamp, the labels' input order);
- `plugin-query`   `persist` with the entity rows given as a DuckDB query over the labels parquet: labels and
                   result never enter pandas (the bigger-than-memory path);
- `asof`           a hand-written DuckDB query (below, `asof_sql`), result to pandas with `.df()`;
- `asof-parquet`   the same query over the labels parquet (as `plugin-query`), `COPY ... TO` a parquet file,
                   unsorted;
- `asof-parquet-sorted` the same, sorted by (event_timestamp, impression_id): an order fixed as persist's is (the
                   same rows give the same file), so the two parquet paths do the same work;
- `trainset`       what `make train` does (training/trainset.py): `persist` of the labels query in chunks of
                   whole days (TrainConfig.query_join_chunk_rows), each chunk's rows in (event_timestamp,
                   impression_id) order, then the chunks copied into one zstd file: labels to training set file.

Loading the labels into pandas is not timed (Feast's API takes them as a frame; the `plugin-query` child never
loads them). Seconds are wall time; CPU seconds (user + system, all threads) are shown too because the machine
may be shared. Each path runs --rounds times, interleaved, and the best round counts. After timing, every
child writes its result as parquet and the parent checks with DuckDB that all paths returned the same rows and
values (`EXCEPT ALL` both ways); a mismatch fails the run.

`run_benchmark(...)` and `markdown(...)` are the functions a wider benchmark (`make bench-train`) can call.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import yaml

PATHS = (
    "feast",
    "plugin",
    "plugin-parquet",
    "plugin-query",
    "asof",
    "asof-parquet",
    "asof-parquet-sorted",
    "trainset",
)
FROM_PARQUET = ("plugin-query", "asof-parquet", "asof-parquet-sorted", "trainset")  # labels never in pandas
FEATURE_SERVICE = "ctr_model_v1"
SAMPLE_SEED = 11


@dataclass
class Measurement:
    path: str
    round: int
    rows: int
    wall_s: float
    cpu_s: float
    peak_rss_gb: float


# --- the hand-written join ----------------------------------------------------------------------------


def asof_sql(store: Any, entity_relation: str) -> str:
    """A DuckDB query a person would write for these views: per view, an ASOF LEFT JOIN on the join keys with
    the inequality on the time the row became visible, `greatest(event_timestamp, created_timestamp)` (rows
    with no created time are never visible under the created filter), and the TTL as a CASE on the row found.
    It does not break ties between rows of one key with the same visibility time (the marts have none) and
    assumes no row was created after its event time (dbt writes created = event); the parity check verifies it
    returns exactly what Feast's join returns on the rows benchmarked. Reads the views' sources, keys and TTLs
    from the registry."""
    service = store.get_feature_service(FEATURE_SERVICE)
    selects, joins = ["e.*"], []
    for i, projection in enumerate(service.feature_view_projections):
        view = store.get_feature_view(projection.name)
        source = view.batch_source
        source_of = {feast: col for col, feast in source.field_mapping.items()}
        keys = [e.name for e in view.entity_columns]
        features = [f.name for f in projection.features]
        cols = [f'"{source_of.get(c, c)}" as "{c}"' for c in keys + features]
        rel = (
            f"(select {', '.join(cols)}, event_timestamp as _ts, greatest(event_timestamp, created_timestamp) as _at "
            f"from read_parquet('{source.path}') where created_timestamp is not null)"
        )
        on = " and ".join([f'e."{k}" = v{i}."{k}"' for k in keys] + [f"e.event_timestamp >= v{i}._at"])
        joins.append(f"asof left join {rel} v{i} on {on}")
        ttl_us = int(view.ttl.total_seconds() * 1_000_000)
        fresh = f"v{i}._ts >= e.event_timestamp - to_microseconds({ttl_us})"
        selects += [f'case when {fresh} then v{i}."{f}" end as "{f}"' for f in features]
    return f"select {', '.join(selects)} from {entity_relation} e {' '.join(joins)}"


# --- one measurement, in a child process --------------------------------------------------------------


def labels_sql(marts: Path, rows: int | None) -> str:
    sql = f"select * from read_parquet('{marts / 'impression_labels.parquet'}')"
    return sql + (f" using sample {rows} rows (reservoir, {SAMPLE_SEED})" if rows else "")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(home: Path, path: str, rows: int | None, result: Path) -> dict[str, float]:
    """Time one path; write its result to `result` (parquet, untimed) for the parity check."""
    os.environ["SHOPRANK_HOME"] = str(home)
    from feast import FeatureStore
    from feast.infra.offline_stores.file_source import SavedDatasetFileStorage

    from platform_common.feast_config import get_feature_store, render_feature_store_yaml
    from platform_common.settings import FEATURE_REPO_DIR, Settings

    settings = Settings(home=home)
    store = get_feature_store(settings)
    if path == "feast":
        config = yaml.safe_load(render_feature_store_yaml(settings).read_text())
        config["offline_store"] = {"type": "duckdb"}
        stock_yaml = result.with_suffix(".yaml")
        stock_yaml.write_text(yaml.safe_dump(config))
        store = FeatureStore(repo_path=str(FEATURE_REPO_DIR), fs_yaml_file=stock_yaml)
    service = store.get_feature_service(FEATURE_SERVICE)
    query = labels_sql(settings.marts_dir, rows)
    labels: pd.DataFrame | None = None
    if path == "trainset" and rows:  # training reads a labels file: the sample is written to one (untimed)
        sample = result.with_name(f"{result.stem}.labels.parquet")
        duckdb.connect().execute(f"copy ({query}) to '{sample}' (format parquet)")
    if path not in FROM_PARQUET:
        labels = duckdb.connect().execute(query).df()
        labels["event_timestamp"] = pd.to_datetime(labels["event_timestamp"], utc=True)
    # the hand-written join gets the engine settings the plugin's store runs with (the rendered feature_store.yaml:
    # memory_limit, spill folder); DuckDB's own default would take 80% of the machine
    con = duckdb.connect(
        config={"memory_limit": settings.duckdb_memory_limit, "temp_directory": str(settings.home_dir / "duckdb_tmp")}
    )
    con.execute("set TimeZone = 'UTC'")
    frame: pd.DataFrame | None = None

    cpu, wall = _cpu_s(), time.perf_counter()
    if path in ("feast", "plugin"):
        job = store.get_historical_features(entity_df=labels, features=service, filter_by_created_timestamp=True)
        frame = job.to_df()
    elif path in ("plugin-parquet", "plugin-query"):
        entity = query if path == "plugin-query" else labels
        job = store.get_historical_features(entity_df=entity, features=service, filter_by_created_timestamp=True)
        job.persist(SavedDatasetFileStorage(path=str(result)), allow_overwrite=True)
    elif path == "trainset":
        from training.config import TrainConfig
        from training.trainset import chunk_days, into_one_file, label_days, persist_join

        labels_file = sample if rows else settings.marts_dir / "impression_labels.parquet"
        cfg = TrainConfig(feature_service=FEATURE_SERVICE)
        windows = chunk_days(label_days(labels_file), cfg.query_join_chunk_rows)
        with tempfile.TemporaryDirectory(prefix="parts-", dir=result.parent) as parts:
            into_one_file(persist_join(store, cfg, labels_file, windows, Path(parts)), result, Path(parts) / "spill")
    elif path in ("asof", "asof-parquet", "asof-parquet-sorted"):
        if labels is not None:
            con.register("labels", labels)
        sql = asof_sql(store, "labels" if labels is not None else f"({query})")
        if path == "asof":
            relation = con.sql(sql)
            assert relation is not None
            frame = relation.df()
        else:
            order = " order by e.event_timestamp, e.impression_id" if path.endswith("-sorted") else ""
            con.execute(f"copy ({sql}{order}) to '{result}' (format parquet)")
    else:
        raise ValueError(f"unknown path {path}")
    out = {"wall_s": time.perf_counter() - wall, "cpu_s": _cpu_s() - cpu}
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    out["rows"] = float(len(frame)) if frame is not None else float(_parquet_rows(con, result))
    if frame is not None:  # after the RSS reading: writing the frame must not count as the join's memory
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
                frame[column] = frame[column].astype("datetime64[us, UTC]")
        frame.to_parquet(result, index=False)
    return out


def _parquet_rows(con: Any, path: Path) -> int:
    return int(con.sql(f"select count(*) from read_parquet('{path}')").fetchall()[0][0])


# --- the run ------------------------------------------------------------------------------------------


def run_benchmark(
    home: Path, rounds: int = 2, paths: Sequence[str] = PATHS, rows: int | None = None
) -> list[Measurement]:
    """Every path `rounds` times, interleaved, each in its own child process; then the parity check."""
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="bench-pit-") as scratch:
        outputs = {p: Path(scratch) / f"{p}.parquet" for p in paths}
        for r in range(1, rounds + 1):
            for path in paths:
                command = [sys.executable, "-m", "benchmarks.point_in_time", "--home", str(home), "--child", path,
                           "--result", str(outputs[path])] + (["--rows", str(rows)] if rows else [])  # fmt: skip
                proc = subprocess.run(command, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(f"{path} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
                data = json.loads(proc.stdout.strip().splitlines()[-1])
                m = Measurement(path=path, round=r, rows=int(data["rows"]), wall_s=data["wall_s"],
                                cpu_s=data["cpu_s"], peak_rss_gb=data["peak_rss_gb"])  # fmt: skip
                print(f"round {r} {path:15s} {m.wall_s:7.2f} s  cpu {m.cpu_s:7.2f} s  {m.peak_rss_gb:5.2f} GB",
                      file=sys.stderr, flush=True)  # fmt: skip
                results.append(m)
        check_parity(outputs)
    return results


def check_parity(outputs: dict[str, Path]) -> None:
    """Same rows and values from every path (as multisets: Feast and the unsorted paths keep no order)."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    names = list(outputs)
    reference = outputs[names[0]]
    columns = con.sql(f"select * from read_parquet('{reference}') limit 0").columns
    select = ", ".join(f'"{c}"' for c in columns)
    for name in names[1:]:
        a, b = (f"(select {select} from read_parquet('{p}'))" for p in (reference, outputs[name]))
        diff = con.sql(
            f"select (select count(*) from ({a} except all {b})), (select count(*) from ({b} except all {a}))"
        )
        only_ref, only_other = diff.fetchall()[0]
        if only_ref or only_other:
            raise AssertionError(f"{name} differs from {names[0]}: {only_ref} rows only in one, {only_other} in other")


def best(results: Sequence[Measurement]) -> dict[str, Measurement]:
    chosen: dict[str, Measurement] = {}
    for m in results:
        if m.path not in chosen or m.wall_s < chosen[m.path].wall_s:
            chosen[m.path] = m
    return chosen


def markdown(results: Sequence[Measurement]) -> str:
    chosen = best(results)
    rounds = max(m.round for m in results)
    lines = [
        f"| path | label rows | seconds (best of {rounds}) | CPU seconds | peak RSS (GB) | vs hand-written ASOF |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    baseline = {
        "plugin": "asof",
        "plugin-parquet": "asof-parquet",
        "plugin-query": "asof-parquet",
        "trainset": "asof-parquet",
        "feast": "asof",
    }
    for path, m in chosen.items():
        base = chosen.get(baseline.get(path, ""))
        ratio = f"{m.wall_s / base.wall_s:.2f}x ({m.cpu_s / base.cpu_s:.2f}x CPU)" if base else ""
        sorted_base = (
            chosen.get("asof-parquet-sorted") if path in ("plugin-parquet", "plugin-query", "trainset") else None
        )
        if sorted_base:  # persist writes a fixed order: against the hand-written join that sorts alike too
            ratio += f"; {m.wall_s / sorted_base.wall_s:.2f}x sorted ({m.cpu_s / sorted_base.cpu_s:.2f}x CPU)"
        lines.append(f"| `{path}` | {m.rows:,} | {m.wall_s:.2f} | {m.cpu_s:.2f} | {m.peak_rss_gb:.2f} | {ratio} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="a state folder after `make data features apply`")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", type=int, default=None, help="a fixed sample of the labels (default: all)")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {','.join(PATHS)}")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args(argv)
    home = args.home.resolve()
    if args.child:
        print(json.dumps(measure(home, args.child, args.rows, args.result)))
        return
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}")
    results = run_benchmark(home, args.rounds, paths, args.rows)
    if args.json:
        args.json.write_text(json.dumps([asdict(m) for m in results], indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
