"""`make bench-serve`: /rank under load, side by side with Feast's read and an in-process lower bound.

One run, on the same sampled requests (random known users, 100 random known products each):

1. In process, before and after the HTTP phases (pooled, so both see the same machine noise):
   * Feast: `FeatureStore.get_online_features` for every view the model uses (the reference reader: two
     calls, user + product, then user-category + merchant, plus the TTL rule);
   * lower bound: the same rows straight from the SQLite online store (keys serialized by Feast's serializer,
     one `SELECT ... WHERE entity_key IN (...)` per view, values parsed from Feast's ValueProto) and XGBoost
     `inplace_predict` on them; no TTL rule, no response;
   * the service's own path without HTTP (snapshot read, scoring, response build, JSON), timed per stage.
2. Over HTTP on loopback against `bentoml serve` (started here, SHOPRANK_HOME's champion): open-loop fixed
   rates (100 req/s, then 300 req/s) and a closed-loop maximum rate; p50/p95/p99, throughput, errors, and the
   server's CPU per request (psutil).
3. Overload: open loop at 2x the maximum rate just measured. Admission control (serving/guard.py) should shed
   the excess at once with 503: goodput (successful req/s), the shed share, any other error, and the accepted
   requests' p99 next to the p99 at 100 req/s (target: within 2x, no error but the 503).

Writes the "Serving" section of docs/benchmarks.md (other sections are left alone) and the raw numbers to
$SHOPRANK_HOME/benchmarks/serving.json. Targets (2 cores, 100 candidates): /rank p99 at 100 req/s at most 0.5x
Feast's p99; /rank p50 within 3x of the lower bound; at least 300 ranked req/s with no errors; at 2x the max
rate, the accepted requests' p99 within 2x of the p99 at 100 req/s and no error but the 503 of load shedding.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sqlite3
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import typer

from benchmarks import loadgen
from benchmarks.loadgen import PhaseResult
from benchmarks.serving_report import DOC, NOTES, render, write_section
from platform_common.feast_config import get_feature_store
from platform_common.settings import REPO_ROOT, Settings, get_settings
from serving.champion import load_champion
from serving.features.factory import make_reader
from serving.features.feast import FeastReader
from serving.features.routing import ROUTES, ROUTING_FEATURES, Lookup
from serving.features.snapshot import SnapshotReader
from serving.haproxy import ProxyConfig, backend_of, haproxy_binary, running_haproxy
from serving.haproxy import counters as haproxy_counters
from serving.launcher import free_port, running_service
from serving.ranking import rank
from serving.schemas import RankRequest
from serving.scoring import score_matrix
from serving.settings import load as load_serving_settings

# ------------------------------------------------------------------------------------------------------------
# The in-process lower bound: rows straight from the store, then XGBoost
# ------------------------------------------------------------------------------------------------------------


class StoreFloor:
    """Read a request's rows straight from the SQLite online store and score them: nothing else."""

    def __init__(self, store: Any, model: Any) -> None:
        from feast.infra.online_stores.helpers import compute_table_id

        self.model = model
        self.spec = model.bundle.spec
        service = store.get_feature_service(self.spec.feature_service)
        self.views = {p.name_to_use(): [f.name for f in p.features] for p in service.feature_view_projections}
        path = Path(store.config.online_store.path)
        self.con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        versioning = store.config.registry.enable_online_feature_view_versioning
        views = {v: store.get_feature_view(v) for v in self.views}
        self.tables = {v: compute_table_id(store.project, fv, versioning) for v, fv in views.items()}
        self.join_keys = {v: [c.name for c in fv.entity_columns] for v, fv in views.items()}
        self.version = store.config.entity_key_serialization_version
        self.col = {name: j for j, name in enumerate(self.spec.columns)}
        self.vocab = {c: {v: float(i) for i, v in enumerate(self.spec.vocabularies[c])} for c in self.spec.categorical}

    def _key(self, names: Sequence[str], values: Sequence[str]) -> bytes:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        ek = EntityKey(join_keys=list(names), entity_values=[Value(string_val=v) for v in values])
        return serialize_entity_key(ek, entity_key_serialization_version=self.version)

    def _rows(self, view: str, keys: list[bytes]) -> dict[bytes, dict[str, Any]]:
        from feast.protos.feast.types.Value_pb2 import Value

        out: dict[bytes, dict[str, Any]] = {}
        q = f'SELECT entity_key, feature_name, value FROM "{self.tables[view]}" WHERE entity_key IN ({",".join("?" * len(keys))})'  # noqa: E501
        proto = Value()
        for ek, name, blob in self.con.execute(q, keys):
            proto.ParseFromString(blob)
            which = proto.WhichOneof("val")
            out.setdefault(ek, {})[name] = None if which is None else getattr(proto, which)
        return out

    def _fill(self, x: np.ndarray, i: slice | int, row: dict[str, Any] | None) -> None:
        if not row:
            return
        for name, v in row.items():
            j = self.col.get(name)
            if j is None or v is None:
                continue
            x[i, j] = self.vocab[name].get(v, np.nan) if name in self.vocab else v

    def score(self, user_id: str, product_ids: Sequence[str]) -> dict[str, np.ndarray]:
        n = len(product_ids)
        x = np.full((n, len(self.spec.columns)), np.nan, dtype=np.float32)
        ukey = self._key(["user_id"], [user_id])
        self._fill(x, slice(None), self._rows("user_features", [ukey]).get(ukey))
        pkeys = [self._key(["product_id"], [p]) for p in product_ids]
        stored = self._rows("product_features", pkeys)
        prows = [stored.get(k) or {} for k in pkeys]
        for i, row in enumerate(prows):
            self._fill(x, i, row)
        lookup = Lookup.route(user_id, product_ids, {f: [row.get(f) for row in prows] for f in ROUTING_FEATURES})
        for r in ROUTES:
            names = self.join_keys[r.view]
            keys = [self._key(names, values) for values in zip(*(lookup.column(k) for k in names), strict=True)]
            found = self._rows(r.view, list(set(keys)))
            for i, k in enumerate(keys):
                self._fill(x, i, found.get(k))
        x[:, self.col["position"]] = 1
        x[:, self.col["hour_of_day"]] = 12
        x[:, self.col["is_campaign_day"]] = 0
        x[:, self.col["surface"]] = 0
        return score_matrix(self.model.bundle, x)


# ------------------------------------------------------------------------------------------------------------
# In-process timings
# ------------------------------------------------------------------------------------------------------------


def _timed(fn: Callable[[int], Any], n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def _ms(xs: Sequence[float], q: float) -> float:
    return round(float(np.percentile(xs, q)) * 1e3, 3) if len(xs) else float("nan")


class InProcess:
    """The three in-process paths, built once (the snapshot is loaded once) and timed in passes."""

    def __init__(self, settings: Settings) -> None:
        store = get_feature_store(settings)
        self.model = load_champion(settings)
        assert self.model.bundle.spec is not None
        fs = self.model.bundle.spec.feature_service
        self.feast_reader = FeastReader(store, fs)
        self.floor = StoreFloor(store, self.model)
        reader = make_reader(lambda: get_feature_store(settings), fs, mode="snapshot")
        if not isinstance(reader, SnapshotReader):
            raise SystemExit(f"bench-serve compares against the in-memory snapshot; this store gave {reader.mode}")
        self.reader: SnapshotReader = reader

    def run(self, bodies: list[dict], n: int) -> dict[str, list[float]]:
        requests = [RankRequest.model_validate(b) for b in bodies[:n]]
        now = datetime.now(UTC)
        out: dict[str, list[float]] = {"read": [], "score": [], "build": [], "json": [], "service_total": []}
        r0 = requests[0]
        self.feast_reader.fetch(r0.user_id, r0.product_ids, now=now)  # warm each path once, then time
        found = self.floor.score(r0.user_id, r0.product_ids)
        if not np.isfinite(found["pctr"]).all():
            raise RuntimeError("the store floor scored a non-finite pCTR")
        out["feast_get_online_features"] = _timed(
            lambda i: self.feast_reader.fetch(requests[i].user_id, requests[i].product_ids, now=now), n
        )
        out["lower_bound"] = _timed(lambda i: self.floor.score(requests[i].user_id, requests[i].product_ids), n)
        for r in requests:
            trace: dict[str, Any] = {}
            t0 = time.perf_counter()
            resp = rank(r, self.model, self.reader, now=now, trace=trace)
            t1 = time.perf_counter()
            resp.model_dump_json()
            t2 = time.perf_counter()
            out["read"].append(trace["read_seconds"])
            out["score"].append(trace["score_seconds"])
            out["build"].append((t1 - t0) - trace["read_seconds"] - trace["score_seconds"])
            out["json"].append(t2 - t1)
            out["service_total"].append(t2 - t0)
        return out


# ------------------------------------------------------------------------------------------------------------
# The service under load
# ------------------------------------------------------------------------------------------------------------


def service_processes(port: int) -> list[psutil.Process]:
    """The `bentoml serve` process on `port` and its workers."""
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "bentoml" in " ".join(cmd) and "serve" in cmd and str(port) in cmd:
            return [p, *p.children(recursive=True)]
    return []


def _cpu_seconds(procs: Sequence[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _rss_mb(procs: Sequence[psutil.Process]) -> float:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 2**20


TUNING = {
    "2 workers, 8 threads, sync handler (default)": {},
    "1 worker, 8 threads": {"SHOPRANK_WORKERS": "1"},
    "2 workers, 1 thread": {"SHOPRANK_THREADS": "1"},
    "2 workers, 8 threads, BentoML access log and /rank tracing on": {
        "SHOPRANK_ACCESS_LOG": "1",
        "SHOPRANK_TRACE_RANK": "1",
    },
}


@dataclass(frozen=True)
class ProxyShedding:
    """HAProxy in front for the last two phases (serving/haproxy.py): at most `max_conn` requests in the service
    at once, a 503 after `queue_timeout_ms` in HAProxy's queue; HAProxy runs on `cpus` (the load generator's)."""

    max_conn: int = 1
    queue_timeout_ms: int = 5
    cpus: tuple[int, ...] = ()


def _phase(
    kind: str, rate: float, url: str, bodies: list[bytes], seconds: float, concurrency: int, factor: float
) -> PhaseResult:
    if kind.endswith("fixed"):
        return loadgen.run(loadgen.fixed_rate(url, bodies, rate=rate, seconds=seconds))
    if kind == "max":
        return loadgen.run(loadgen.max_rate(url, bodies, seconds=seconds, concurrency=concurrency))
    # overload, open loop: the first phase stamps X-Request-Start as a proxy would; the others leave the service
    # its own clock (behind HAProxy, HAProxy's queue is where the wait is bounded)
    stamp = kind == "overload"
    name = f"overload: {factor:g}x max = {rate:g} rps" + ("" if stamp else ", no X-Request-Start")
    return loadgen.run(loadgen.fixed_rate(url, bodies, rate=rate, seconds=seconds, name=name, stamp=stamp))


def http_phases(
    settings: Settings,
    bodies: list[bytes],
    seconds: float,
    rates: Sequence[float],
    concurrency: int,
    env: dict[str, str],
    overload_factor: float = 0.0,
    server_cpus: Sequence[int] | None = None,
    proxy: ProxyShedding | None = None,
) -> tuple[list[dict], dict]:
    """Fixed rates, then the closed-loop maximum, then (if `overload_factor`) that many times the maximum, stamped
    as by a proxy, then unstamped; with `proxy`, then 100 req/s and the same overload again through HAProxy in
    front of the same service."""
    results: list[dict] = []
    started = time.perf_counter()
    with running_service(settings, timeout=900, extra_env=env, cpus=server_cpus) as url:
        startup = time.perf_counter() - started
        port = int(url.rsplit(":", 1)[1])
        procs = service_processes(port)
        loadgen.run(loadgen.max_rate(url, bodies, seconds=min(5.0, seconds), concurrency=4, name="warm-up"))
        rss0 = _rss_mb(procs)
        phases: list[tuple[str, float]] = [("fixed", r) for r in rates] + [("max", 0.0)]
        if overload_factor > 0:
            phases += [("overload", 0.0), ("overload_unstamped", 0.0)]
            if proxy is not None:
                phases += [("proxy_fixed", 100.0), ("proxy_overload", 0.0)]
        measured_max = 0.0
        with contextlib.ExitStack() as stack:
            target, stats = url, ""
            for kind, rate in phases:
                if kind.startswith("overload") or kind == "proxy_overload":
                    rate = round(overload_factor * max(measured_max, 1.0))
                if kind.startswith("proxy") and target == url:
                    assert proxy is not None
                    cfg = ProxyConfig(
                        backend=backend_of(url),
                        port=free_port(),
                        stats_port=free_port(),
                        max_conn=proxy.max_conn,
                        queue_timeout_ms=proxy.queue_timeout_ms,
                    )
                    target = stack.enter_context(running_haproxy(cfg, cpus=proxy.cpus or None))
                    stats = f"http://{cfg.bind}:{cfg.stats_port}"
                before = haproxy_counters(stats) if stats else {}
                cpu0 = _cpu_seconds(procs)
                res = _phase(kind, rate, target, bodies, seconds, concurrency, overload_factor)
                summary = res.summary()
                summary["server_cpu_ms_per_request"] = round(1e3 * (_cpu_seconds(procs) - cpu0) / max(res.sent, 1), 3)
                if kind == "max":
                    measured_max = res.throughput
                if "overload" in kind:
                    summary |= {"overload_factor": overload_factor, "measured_max_rps": measured_max}
                    summary |= {"stamped": kind == "overload"}
                if kind.startswith("proxy"):
                    after = haproxy_counters(stats)
                    summary["phase"] = f"HAProxy in front: {summary['phase']}"
                    summary["proxy"] = {
                        "max_conn": proxy.max_conn if proxy else None,
                        "queue_timeout_ms": proxy.queue_timeout_ms if proxy else None,
                        "cpus": list(proxy.cpus) if proxy else [],
                        "requests": after.get("http_requests_total", 0) - before.get("http_requests_total", 0),
                        "shed_by_proxy": after.get("connection_errors_total", 0)
                        - before.get("connection_errors_total", 0),
                        "max_queue": after.get("max_queue"),
                    }
                results.append(summary)
                typer.echo(json.dumps(summary))
        info: dict[str, Any] = {"startup_seconds": round(startup, 1), "rss_mb_start": round(rss0, 1)}
        info["rss_mb_end"] = round(_rss_mb(procs), 1)
        info["worker_processes"] = len(procs) - 1
        # as measured, not as asked: the cores each service process may run on
        info["service_affinity"] = sorted({c for p in procs for c in p.cpu_affinity()})
    return results, info


# ------------------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "commit": commit.strip() + (" (with uncommitted changes)" if dirty.strip() else ""),
        "python": platform.python_version(),
    }


def parse_cpus(spec: str, option: str) -> tuple[int, ...]:
    """`0,1` or `0-1` -> (0, 1); every core must exist on this machine."""
    if not spec.strip():
        return ()
    cores: list[int] = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            cores.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise typer.BadParameter(
            f"{spec!r} is not a list of cores such as 0 or 0,1 or 0-1", param_hint=option
        ) from None
    allowed = os.sched_getaffinity(0)
    if unknown := sorted(set(cores) - allowed):
        raise typer.BadParameter(f"core(s) {unknown} not available here (have {sorted(allowed)})", param_hint=option)
    return tuple(sorted(set(cores)))


def _stats(xs: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": _ms(xs, 50), "p95_ms": _ms(xs, 95), "p99_ms": _ms(xs, 99), "n": len(xs)}


def main(
    seconds: float = typer.Option(20.0, help="Length of each HTTP phase."),
    rates: str = typer.Option("100,300", help="Open-loop rates (req/s), comma-separated."),
    concurrency: int = typer.Option(16, help="Connections of the closed-loop max-rate phase."),
    requests: int = typer.Option(2000, help="Distinct sampled request bodies."),
    in_process_n: int = typer.Option(300, help="Requests timed in process (each pass, before and after HTTP)."),
    candidates: int = typer.Option(100),
    write_docs: bool = typer.Option(True, help="Write the Serving section of docs/benchmarks.md."),
    tune: bool = typer.Option(True, help="Also compare BentoML configurations (workers, threads, logging)."),
    overload: float = typer.Option(2.0, help="Overload phase at this many times the max rate (0: skip it)."),
    render_only: bool = typer.Option(False, help="Only re-render the section from the last run's JSON."),
    server_cpus: str = typer.Option(
        "",
        help="Cores of the service, e.g. 0 (with --client-cpus: the load generator kept off them, as on another box).",
    ),
    client_cpus: str = typer.Option("", help="Cores of this process (the load generator and the in-process paths)."),
    proxy: bool = typer.Option(
        True, help="Then 100 req/s and the overload again through HAProxy in front (needs haproxy installed)."
    ),
    proxy_max_conn: int = typer.Option(
        0, min=0, help="HAProxy: /rank requests in the service at once (0: one per core the service runs on)."
    ),
    proxy_queue_ms: int = typer.Option(5, min=1, help="HAProxy: wait in its queue before answering 503."),
) -> None:
    settings = get_settings()
    server_set, client_set = parse_cpus(server_cpus, "--server-cpus"), parse_cpus(client_cpus, "--client-cpus")
    if server_set and client_set and set(server_set) & set(client_set):
        raise typer.BadParameter("--server-cpus and --client-cpus must not share a core", param_hint="--client-cpus")
    if client_set:
        os.sched_setaffinity(0, set(client_set))
    if proxy and overload > 0:
        try:
            haproxy_binary()
        except FileNotFoundError as exc:
            raise typer.BadParameter(f"{exc}; or run without it: --no-proxy", param_hint="--proxy") from None
    if render_only:
        report = json.loads((settings.home_dir / "benchmarks" / "serving.json").read_text())
        report["notes"] = NOTES
        write_section(render(report))
        typer.echo(f"wrote the Serving section of {DOC}")
        return
    env = {
        "SHOPRANK_REQUEST_LOG_RATE": os.environ.get("SHOPRANK_REQUEST_LOG_RATE", "0.01"),
        # the load generator stamps X-Request-Start as a proxy would: the service is told to trust it
        "SHOPRANK_REQUEST_START_HEADER": os.environ.get("SHOPRANK_REQUEST_START_HEADER", "1"),
    }
    bodies = loadgen.sample_requests(settings.marts_dir, requests, candidates)
    encoded = loadgen.encode(bodies)
    at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    mach = machine()
    typer.echo("in process: loading the champion, Feast and the snapshot")
    paths = InProcess(settings)
    typer.echo(f"in process, pass 1 ({in_process_n} requests per path)")
    ip1 = paths.run(bodies, in_process_n)
    fixed = [float(r) for r in rates.split(",") if r]
    # scoring is CPU work: one request per core of the service keeps every core busy without a queue inside it
    max_conn = proxy_max_conn or len(server_set or os.sched_getaffinity(0))
    shedding = ProxyShedding(max_conn, proxy_queue_ms, client_set) if proxy else None
    http, info = http_phases(settings, encoded, seconds, fixed, concurrency, env, overload, server_set, shedding)
    tuning: dict[str, tuple[dict, dict]] = {}
    if tune:
        for name, extra in TUNING.items():
            typer.echo(f"tuning: {name}")
            phases, _ = http_phases(
                settings, encoded, min(seconds, 15.0), [300.0], concurrency, env | extra, server_cpus=server_set
            )
            tuning[name] = (phases[-1], phases[0])
    typer.echo("in process, pass 2")
    ip2 = paths.run(bodies, in_process_n)
    pooled = {k: ip1[k] + ip2[k] for k in ip1}
    served = load_serving_settings()  # what the service started here reads from the same environment
    report = {
        "at": at,
        "command": "make bench-serve SHOPRANK_HOME=<a SCALE=small home>",
        "machine": mach,
        "scale": settings.scale,
        "model_version": paths.model.version,
        "candidates": candidates,
        "requests": requests,
        "cpu_partition": (
            {"server": list(server_set), "client": list(client_set)} if server_set or client_set else None
        ),
        "snapshot_rows": paths.reader.snapshot.rows,
        "snapshot_load_seconds": round(paths.reader.snapshot.load_seconds, 1),
        "service_config": (
            f"SHOPRANK_WORKERS={served.workers}, SHOPRANK_THREADS={served.threads}, "
            f"SHOPRANK_MAX_IN_FLIGHT={served.max_in_flight}, "
            f"SHOPRANK_QUEUE_DEADLINE_SECONDS={served.queue_deadline_seconds:g}, "
            f"SHOPRANK_QUEUE_TARGET_SECONDS={served.queue_target_seconds:g}, "
            f"SHOPRANK_QUEUE_INTERVAL_SECONDS={served.queue_interval_seconds:g}"
        ),
        "in_process": {k: _stats(v) for k, v in pooled.items()},
        "http": http,
        **info,
        "tuning": tuning,
        "notes": NOTES,
    }
    paths.reader.close()
    out = settings.home_dir / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.json").write_text(json.dumps(report, indent=2, default=str))
    text = render(report)
    typer.echo(text)
    if write_docs:
        write_section(text)
        typer.echo(f"wrote the Serving section of {DOC}")


if __name__ == "__main__":
    typer.run(main)
