"""`make skew-check`: training-serving parity, measured.

1. Features: for a sample of users, products, user-category pairs and merchants, what Feast's online store
   returns must equal what `get_historical_features` returns for the same entities at the view's last
   materialization time, exactly.
   The stream views (issue 17; pushed online by the stream processor, not materialized) are checked on entities
   sampled from their offline log, twice: each online row must equal what the join gives at the second it
   became visible (the online store holds the last push; training joins the same row), and at the check's
   time, after the TTL rule the service applies, online and offline must agree on every value (missing
   included).
2. Scores: for a sample of /rank requests to the running service, the scores must equal what the offline
   pipeline computes (historical features + the same request context + the same model version through the
   MLflow pyfunc) to 1e-6.

Prints a table of mismatches by feature and exits non-zero on any.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import httpx
import numpy as np
import pandas as pd
import typer
from feast import FeatureService, FeatureStore
from rich.console import Console
from rich.table import Table

from platform_common.feast_config import get_feature_store
from platform_common.registry import connect, load_bundle
from platform_common.settings import Settings, get_settings
from platform_common.stream_log import KEYS, source_path
from serving.champion import load_champion
from serving.features.feast import TS_SUFFIX
from serving.features.routing import STREAM_VIEWS
from serving.launcher import running_service
from training.bundle import RankerBundle

console = Console()
warnings.filterwarnings("ignore", category=DeprecationWarning)
logging.getLogger("mlflow.models.utils").setLevel(logging.ERROR)  # extra id columns are expected and ignored
SCORE_TOLERANCE = 1e-6
VIEW_KEYS = {
    "user_features": ("user_id",),
    "product_features": ("product_id",),
    "user_category_features": ("user_id", "category_l1"),
    "merchant_features": ("merchant_id",),
    # issue 18, section 4: the day's campaign plan (ctr_model_v3_calendar), materialized like the daily views
    "product_campaign_plan": ("product_id",),
}


@dataclass(frozen=True)
class Mismatch:
    kind: str  # "feature" or "score"
    name: str
    entity: str
    online: object
    offline: object


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT


def same_value(a: object, b: object, tol: float = 0.0) -> bool:
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    if isinstance(a, int | float | np.number) and isinstance(b, int | float | np.number):
        return abs(float(a) - float(b)) <= tol
    return a == b


def materialized_at(store: FeatureStore, view: str) -> datetime:
    intervals = store.get_feature_view(view).materialization_intervals
    if not intervals:
        raise RuntimeError(f"feature view {view} was never materialized: run `make materialize`")
    return max(end for _, end in intervals)


def sample_keys(settings: Settings, view: str, n: int, seed: int) -> pd.DataFrame:
    keys = ", ".join(VIEW_KEYS[view])
    with duckdb.connect() as con:
        con.execute("select setseed(?)", [seed / 1000])
        return con.execute(
            f"select distinct {keys} from read_parquet(?) order by random() limit ?",
            [str(settings.marts_dir / f"{view}.parquet"), n],
        ).df()


def historical(store: FeatureStore, keys: pd.DataFrame, refs: list[str] | FeatureService, at: datetime) -> pd.DataFrame:
    entity_df = keys.assign(event_timestamp=pd.Timestamp(at).tz_convert("UTC"), _row=range(len(keys)))
    out = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    return out.sort_values("_row").reset_index(drop=True)


def feature_parity(settings: Settings, store: FeatureStore, n: int, seed: int) -> tuple[list[Mismatch], int]:
    mismatches: list[Mismatch] = []
    compared = 0
    for view, keys in VIEW_KEYS.items():
        fv = store.get_feature_view(view)
        refs = [f"{view}:{f.name}" for f in fv.features]
        sample = sample_keys(settings, view, n, seed)
        online = store.get_online_features(features=refs, entity_rows=sample.to_dict("records")).to_dict()
        offline = historical(store, sample, refs, materialized_at(store, view))
        for f in fv.features:
            for i in range(len(sample)):
                compared += 1
                a, b = online[f.name][i], offline[f.name].iat[i]
                if not same_value(a, b):
                    entity = "|".join(str(sample[k].iat[i]) for k in keys)
                    mismatches.append(Mismatch("feature", f"{view}:{f.name}", entity, a, b))
    return mismatches, compared


def _utc(ts: object) -> pd.Timestamp:
    """An online event timestamp as UTC: `to_dict(include_event_timestamps=True)` gives epoch seconds."""
    if isinstance(ts, int | float | np.integer | np.floating):
        return pd.Timestamp(float(ts), unit="s", tz="UTC")
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def sample_stream_keys(settings: Settings, view: str, n: int, seed: int) -> pd.DataFrame:
    key = KEYS[view]
    with duckdb.connect() as con:
        con.execute("select setseed(?)", [seed / 1000])
        return con.execute(
            f"select distinct {key} from read_parquet(?) order by random() limit ?",
            [source_path(settings.stream_log_dir, view), n],
        ).df()


def stream_parity(settings: Settings, store: FeatureStore, n: int, seed: int) -> tuple[list[Mismatch], int]:
    """Online rows of the stream views vs the offline join: at their visible second, and now with the TTL rule."""
    mismatches: list[Mismatch] = []
    compared = 0
    registered = {fv.name for fv in store.list_feature_views()}
    for view in STREAM_VIEWS:
        if view not in registered:
            continue
        fv = store.get_feature_view(view)
        names = [f.name for f in fv.features]
        refs = [f"{view}:{name}" for name in names]
        sample = sample_stream_keys(settings, view, n, seed)
        if sample.empty:
            continue
        key = KEYS[view]
        now = pd.Timestamp.now(tz="UTC")
        online = store.get_online_features(features=refs, entity_rows=sample.to_dict("records")).to_dict(
            include_event_timestamps=True
        )
        stamps = online[names[0] + TS_SUFFIX]
        have = [i for i, ts in enumerate(stamps) if ts]  # absent: None (or 0)
        # The online store reports whole seconds; the row it holds is the newest visible in that second.
        visible = pd.DataFrame(
            {
                key: sample[key].iloc[have].to_numpy(),
                "event_timestamp": [_utc(stamps[i]) + pd.Timedelta(seconds=1, microseconds=-1) for i in have],
                "_row": range(len(have)),
            }
        )
        joined = (
            store.get_historical_features(entity_df=visible, features=refs).to_df().sort_values("_row")
            if have
            else visible
        )
        for j, i in enumerate(have):
            for name in names:
                compared += 1
                a, b = online[name][i], joined[name].iat[j]
                if not same_value(a, b):
                    mismatches.append(Mismatch("feature", f"{view}:{name} (visible)", sample[key].iat[i], a, b))
        ttl = fv.ttl.total_seconds() if fv.ttl else None
        at_now = historical(store, sample, refs, now.to_pydatetime())
        for i in range(len(sample)):
            ts = stamps[i]
            expired = bool(ts) and ttl is not None and (now - _utc(ts)).total_seconds() > ttl
            for name in names:
                compared += 1
                a = None if expired else online[name][i]
                b = at_now[name].iat[i]
                if not same_value(a, b):
                    mismatches.append(Mismatch("feature", f"{view}:{name} (now, TTL)", sample[key].iat[i], a, b))
    return mismatches, compared


def sample_requests(settings: Settings, n_requests: int, per_request: int, seed: int) -> list[dict]:
    users = sample_keys(settings, "user_features", n_requests, seed)["user_id"].tolist()
    products = sample_keys(settings, "product_features", per_request * n_requests, seed + 1)["product_id"].tolist()
    return [
        {"user_id": u, "product_ids": products[i * per_request : (i + 1) * per_request], "objective": "gmv"}
        for i, u in enumerate(users)
    ]


def offline_scores(
    settings: Settings, store: FeatureStore, request: dict, answer: dict, at: datetime, answered_at: datetime
) -> dict[str, dict[str, float]]:
    """Scores of one answered request, recomputed from historical features with the same model version."""
    loaded = load_bundle(settings, answer["model"]["name"], str(answer["model"]["version"]), RankerBundle)
    bundle = loaded.bundle
    product_keys = pd.DataFrame({"product_id": request["product_ids"]})
    routing = historical(
        store, product_keys, ["product_features:product_merchant_id", "product_features:product_category_l1"], at
    )
    keys = pd.DataFrame(
        {
            "user_id": request["user_id"],
            "product_id": request["product_ids"],
            "merchant_id": routing["product_merchant_id"].fillna("__unknown__").to_numpy(),
            "category_l1": routing["product_category_l1"].fillna("__unknown__").to_numpy(),
        }
    )
    assert bundle.spec is not None
    service = store.get_feature_service(bundle.spec.feature_service)
    frame = historical(store, keys, service, at)
    # Stream views are pushed, not materialized: the service read them at request time, so the offline side
    # joins them at the answer's time (TTL rule included, as the join applies it). A processor pushing while
    # the check runs can move a row between the answer and this join: run it with the processor paused.
    stream_refs = [
        f"{p.name_to_use()}:{f.name}"
        for p in service.feature_view_projections
        if p.name in STREAM_VIEWS
        for f in p.features
    ]
    if stream_refs:
        live = historical(store, keys, stream_refs, answered_at)
        for ref in stream_refs:
            name = ref.split(":", 1)[1]
            frame[name] = live[name].to_numpy()
    ctx = answer["context"]
    frame = frame.assign(
        surface=answer["surface"],
        position=ctx["position"],
        hour_of_day=ctx["hour_of_day"],
        is_campaign_day=ctx["is_campaign_day"],
    )
    # The bundle's own predict, as the service unwraps it: MLflow's signature declares integer features long, and
    # a historical frame holds an integer feature with a missing value as float64, which MLflow refuses for long.
    preds = bundle.predict(None, frame)
    return {pid: preds.iloc[i].to_dict() for i, pid in enumerate(request["product_ids"])}


def score_parity(
    settings: Settings, store: FeatureStore, url: str, n_requests: int, seed: int
) -> tuple[list[Mismatch], int]:
    at = max(materialized_at(store, v) for v in VIEW_KEYS)
    mismatches: list[Mismatch] = []
    compared = 0
    for request in sample_requests(settings, n_requests, 20, seed):
        asked_at = datetime.now(UTC)
        answer = httpx.post(f"{url}/rank", json=request, timeout=30)
        answer.raise_for_status()
        body = answer.json()
        expected = offline_scores(settings, store, request, body, at, asked_at)
        for item in body["ranking"]:
            for key in ("pctr", "pcvr", "pctcvr", "expected_gmv"):
                compared += 1
                if not same_value(item[key], expected[item["product_id"]][key], SCORE_TOLERANCE):
                    mismatches.append(
                        Mismatch(
                            "score",
                            key,
                            f"{request['user_id']}|{item['product_id']}",
                            item[key],
                            expected[item["product_id"]][key],
                        )
                    )
    return mismatches, compared


def report(mismatches: list[Mismatch], compared: dict[str, int]) -> None:
    table = Table(title="training-serving skew: mismatches by feature / score")
    for col in ("kind", "name", "mismatches", "example entity", "online / served", "offline"):
        table.add_column(col)
    counts = Counter((m.kind, m.name) for m in mismatches)
    for (kind, name), count in sorted(counts.items()):
        ex = next(m for m in mismatches if (m.kind, m.name) == (kind, name))
        table.add_row(kind, name, str(count), ex.entity, repr(ex.online), repr(ex.offline))
    console.print(table)
    console.print(
        f"compared {compared['feature']:,} feature values and {compared['score']:,} scores: "
        f"{len(mismatches)} mismatches"
    )


def run(settings: Settings, n: int = 50, n_requests: int = 10, seed: int = 7, url: str | None = None) -> int:
    connect(settings)  # models:/ URIs below resolve against this platform's registry
    store = get_feature_store(settings)
    feats, n_feat = feature_parity(settings, store, n, seed)
    streamed, n_stream = stream_parity(settings, store, n, seed)
    feats, n_feat = feats + streamed, n_feat + n_stream
    if url is None:
        load_champion(settings)  # fail early and clearly if there is nothing to serve
        with running_service(settings) as live:
            scores, n_score = score_parity(settings, store, live, n_requests, seed)
    else:
        scores, n_score = score_parity(settings, store, url, n_requests, seed)
    mismatches = feats + scores
    report(mismatches, {"feature": n_feat, "score": n_score})
    return len(mismatches)


def main(
    n: int = typer.Option(50, help="Entities sampled per feature view."),
    requests: int = typer.Option(10, help="/rank requests (20 candidates each) to compare scores on."),
    seed: int = typer.Option(7),
    url: str = typer.Option(None, help="A running service; default: start one for the check."),
) -> None:
    failures = run(get_settings(), n, requests, seed, url)
    raise typer.Exit(1 if failures else 0)


if __name__ == "__main__":
    typer.run(main)
