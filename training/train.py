"""Train the ranker's heads on a point-in-time training set, evaluate against the oracle, register in MLflow."""

from __future__ import annotations

import getpass
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from rich.console import Console

from platform_common.feast_config import get_feature_store
from platform_common.feature_spec import FeatureSpec
from platform_common.registry import connect, ensure_experiment
from platform_common.settings import Settings, get_settings
from training import evaluation, oracle
from training.bundle import BundleConfig, CvrMethod, RankerBundle, write_artifacts
from training.config import TrainConfig, XGBConfig
from training.dataset import build_training_set, save_test_set
from training.guards import leakage_guard
from training.metrics import binary_metrics
from training.signature import integer_features, model_signature

console = Console(stderr=True)

PIP_REQUIREMENTS = [f"xgboost=={xgb.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]

# head -> (rows it learns from, label)
HEAD_TASKS: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str]] = {
    "ctr": (lambda f: f, "clicked"),
    "cvr": (lambda f: f[f["clicked"] == 1], "converted"),
    "ctcvr": (lambda f: f, "converted"),
}

Augment = Callable[[pd.DataFrame], tuple[pd.DataFrame, list[str]]]


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_version: str
    metrics: dict[str, float]
    guard_passed: bool


def fit_head(spec: FeatureSpec, train: pd.DataFrame, valid: pd.DataFrame, label: str, cfg: XGBConfig) -> xgb.Booster:
    """Early-stopped booster, cut at its best iteration so every consumer uses the right trees."""
    dtrain, dvalid = _dmatrix(spec, train, label), _dmatrix(spec, valid, label)
    booster = xgb.train(
        cfg.booster_params(),
        dtrain,
        num_boost_round=cfg.num_boost_round,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=cfg.early_stopping_rounds,
        verbose_eval=False,
    )
    return booster[: booster.best_iteration + 1]


def refit_head(
    spec: FeatureSpec, train: pd.DataFrame, valid: pd.DataFrame, label: str, cfg: XGBConfig, stopped: xgb.Booster
) -> xgb.Booster:
    """Refit on train + valid with the early-stopped tree count scaled by the rows added (no early stopping:
    the validation days are now training rows)."""
    rows = pd.concat([train, valid], ignore_index=True)
    n_trees = max(1, round(stopped.num_boosted_rounds() * len(rows) / max(len(train), 1)))
    return xgb.train(cfg.booster_params(), _dmatrix(spec, rows, label), num_boost_round=n_trees, verbose_eval=False)


def _dmatrix(spec: FeatureSpec, rows: pd.DataFrame, label: str) -> xgb.DMatrix:
    return xgb.DMatrix(spec.frame_matrix(rows), label=rows[label].to_numpy(), feature_names=list(spec.columns))


def units_per_order(train: pd.DataFrame) -> float:
    """GMV of an order per unit of shown price (quantity > 1 happens): turns pCTCVR x price into GMV."""
    orders = train[train["converted"] == 1]
    price = orders["price"].sum()
    return float(orders["order_gmv"].sum() / price) if price > 0 else 1.0


def units_by_price_band(train: pd.DataFrame, n_bands: int = 5) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean GMV per unit of price within price quintiles of the converted training impressions."""
    orders = train[(train["converted"] == 1) & (train["price"] > 0)]
    if len(orders) < 20 * n_bands:
        return (), ()
    edges = tuple(float(e) for e in np.quantile(orders["price"], np.linspace(0, 1, n_bands + 1)[1:-1]))
    band = np.searchsorted(np.asarray(edges), orders["price"].to_numpy(), side="left")
    units = tuple(
        float(orders["order_gmv"].to_numpy()[band == b].sum() / orders["price"].to_numpy()[band == b].sum())
        for b in range(n_bands)
    )
    return edges, units


def choose_cvr_method(bundle: RankerBundle, valid: pd.DataFrame) -> tuple[str, dict[str, float]]:
    """Pick how pCTCVR is formed by log loss on the validation days: observable in production, unlike the oracle."""
    assert bundle.spec is not None
    raw = bundle.head_scores(bundle.spec.frame_matrix(valid))
    y = valid["converted"].to_numpy()
    methods: tuple[CvrMethod, ...] = ("clicked_only", "ctcvr_over_ctr")
    losses = {method: binary_metrics(y, bundle.combine(raw, method)["pctcvr"], "v")["v_logloss"] for method in methods}
    return min(losses, key=lambda m: losses[m]), {f"valid_ctcvr_logloss_{m}": v for m, v in losses.items()}


def train(
    cfg: TrainConfig | None = None, settings: Settings | None = None, augment: Augment | None = None
) -> TrainResult:
    """`augment` adds columns to the training frame before fitting: the leakage test uses it to plant a leak."""
    cfg = cfg or TrainConfig()
    settings = settings or get_settings()
    store = get_feature_store(settings)
    console.print(f"[bold]Building point-in-time training set[/] from feature service {cfg.feature_service}")
    ts = build_training_set(store, settings, cfg)
    numeric = list(ts.columns.numeric)
    if augment is not None:
        frame, extra = augment(ts.frame)
        numeric += extra
        ts = replace(ts, frame=frame)
    train_df, valid_df, test_df = ts.part("train"), ts.part("valid"), ts.part("test")
    console.print(
        f"rows: train {len(train_df):,} valid {len(valid_df):,} test {len(test_df):,}; fingerprint {ts.fingerprint}"
    )
    spec = FeatureSpec.fit(train_df, cfg.feature_service, numeric, ts.columns.categorical)
    boosters = {}
    for head, (rows, label) in HEAD_TASKS.items():
        with console.status(f"Training {head} head (XGBoost, early stopping on the validation days)"):
            boosters[head] = fit_head(spec, rows(train_df), rows(valid_df), label, cfg.xgb)
    test_path = save_test_set(ts, settings)

    client = connect(settings)
    experiment_id = ensure_experiment(settings)
    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        bundle = RankerBundle()
        bundle.load_from_paths(write_artifacts(Path(tmp) / "probe", spec, boosters))
        method, method_metrics = choose_cvr_method(bundle, valid_df)
        method_metrics |= {f"{h}_trees_early_stopped": float(b.num_boosted_rounds()) for h, b in boosters.items()}
        fit_rows = train_df
        if cfg.xgb.refit_on_valid:
            for head, (rows, label) in HEAD_TASKS.items():
                with console.status(f"Refitting {head} head on the train and validation days"):
                    boosters[head] = refit_head(spec, rows(train_df), rows(valid_df), label, cfg.xgb, boosters[head])
            fit_rows = pd.concat([train_df, valid_df], ignore_index=True)
        bands, units = units_by_price_band(fit_rows)
        config = BundleConfig(
            cvr_method=method, units_per_order=units_per_order(fit_rows), price_bands=bands, units_by_band=units
        )
        artifacts = write_artifacts(Path(tmp) / "bundle", spec, boosters, config)
        bundle.load_from_paths(artifacts)

        truth = oracle.load_truth(settings, test_df["impression_id"])
        eta = oracle.examination_eta(settings)
        value = oracle.top_slot_value(truth, test_df["surface"], test_df["position"], eta)
        scored = evaluation.score(bundle, test_df, truth, value)
        metrics = evaluation.classification_metrics(scored) | evaluation.ranking_metrics(scored, eta)
        metrics |= method_metrics | {f"{h}_trees": float(b.num_boosted_rounds()) for h, b in boosters.items()}
        metrics |= {"test_rows": float(len(test_df)), "test_ctr": float(test_df["clicked"].mean())}
        guard = leakage_guard(
            test_df["clicked"].to_numpy(),
            scored.logged["pctr"],
            truth["p_click"].to_numpy(),
            test_df["request_id"].to_numpy(),
        )
        metrics |= {"leakage_auc_gap": guard.auc_gap, "leakage_ci_low": guard.ci_low, "leakage_ci_high": guard.ci_high}

        mlflow.log_params(
            {
                "feature_service": cfg.feature_service,
                "n_features": len(spec.columns),
                "filter_by_created_timestamp": cfg.filter_by_created_timestamp,
                "cvr_method": method,
                "units_per_order": round(config.units_per_order, 4),
                **ts.split.as_params(),
                **{f"xgb_{k}": v for k, v in cfg.xgb.model_dump().items()},
            }
        )
        tags = {
            "data_fingerprint": ts.fingerprint,
            "feature_service": cfg.feature_service,
            "test_set_path": str(test_path),
            "trained_by": getpass.getuser(),
            "leakage_guard": "passed" if guard.passed else "failed",
            "leakage_guard_reason": guard.reason,
        }
        mlflow.set_tags(tags)
        mlflow.log_dict(
            {"features": list(spec.columns), "feature_refs": list(ts.columns.feature_refs)}, "features.json"
        )
        mlflow.log_metrics(metrics)
        example = test_df[list(spec.columns)].head(20)
        signature = model_signature(spec, integer_features(store, cfg.feature_service), bundle.predict(None, example))
        info = mlflow.pyfunc.log_model(
            name="ranker",
            python_model=RankerBundle(),
            artifacts=artifacts,
            signature=signature,
            input_example=example.head(3),
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=settings.model_name,
            metadata={"feature_service": cfg.feature_service, "heads": list(boosters), "cvr_method": method},
        )
        version = str(info.registered_model_version)
        for key in ("data_fingerprint", "feature_service", "test_set_path", "leakage_guard", "leakage_guard_reason"):
            client.set_model_version_tag(settings.model_name, version, key, tags[key])
        client.set_model_version_tag(settings.model_name, version, "metrics", json.dumps(metrics))
        if not guard.passed:
            console.print(f"[red bold]LEAKAGE GUARD FAILED[/]: {guard.reason}")
            mlflow.end_run(status="FAILED")
    colour = "green" if guard.passed else "red"
    console.print(
        f"[{colour}]Registered {settings.model_name} v{version}[/]: CTR AUC {metrics['test_auc']:.4f} "
        f"(oracle {metrics['oracle_auc']:.4f}, lift {metrics['normalized_lift']:.2f}), ECE {metrics['test_ece']:.4f}; "
        f"CVR AUC {metrics['cvr_test_auc']:.4f} (oracle {metrics['cvr_oracle_auc']:.4f}); "
        f"GMV@10 {metrics['gmv_at_10_ratio_to_oracle']:.1%} of oracle "
        f"(popularity {metrics['gmv_at_10_popularity_ratio_to_oracle']:.1%}); pCTCVR via {method}"
    )
    return TrainResult(run.info.run_id, version, metrics, guard.passed)
