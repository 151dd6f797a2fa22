"""`generate(config)`: simulate the marketplace and (re)write `raw/` and `oracle/` under the home folder."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from simulator.campaigns import DAY_US, Days, build_days
from simulator.config import CATALOG, CAUSES, SimConfig
from simulator.entities import (
    Merchants,
    Panels,
    PlantedCause,
    Products,
    Users,
    make_merchants,
    make_panels,
    make_products,
    make_users,
    plant_causes,
    rng_for,
)
from simulator.flaws import inject_flaws
from simulator.landing import EventTable, land
from simulator.tables import (
    campaign_columns,
    merchant_daily_columns,
    merchants_columns,
    product_prices_columns,
    products_columns,
    snapshot_us,
    users_columns,
)
from simulator.traffic import ProgressFn, simulate_traffic
from simulator.writer import ID_FORMATS, write_json, write_oracle_truth, write_partitioned

EVENT_TABLES = ("impressions", "clicks", "orders")


@dataclass(frozen=True)
class World:
    days: Days
    users: Users
    merchants: Merchants
    products: Products
    planted: list[PlantedCause]
    panels: Panels


class Summary(BaseModel):
    model_config = ConfigDict(frozen=True)

    scale: str
    seed: int
    start_date: date
    end_date: date
    raw_dir: Path
    oracle_dir: Path
    rows: dict[str, int]  # rows written per raw table, flawed rows included
    ctr: float  # clean clicks / clean impressions
    cvr: float  # clean orders / clean clicks
    oracle_auc: float  # AUC of the true p_click against the realised clicks
    flaw_counts: dict[str, dict[str, int]]
    planted: list[dict[str, object]]
    seconds: float


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUC with tied scores sharing their mean rank (no sklearn import on the hot path)."""
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = float(mean_rank[inverse][labels.astype(bool)].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def generate(config: SimConfig, progress: ProgressFn | None = None) -> Summary:
    """Simulate the period and atomically replace `raw/` and `oracle/`; same config, same bytes."""
    started = time.perf_counter()
    settings = config.settings()
    seed = config.seed

    def step(label: str) -> None:
        if progress is not None:
            progress(label, 0, 0)

    step("building the catalogue")
    days = build_days(config)
    users = make_users(config, days, rng_for(seed, "users"))
    merchants = make_merchants(config, days, rng_for(seed, "merchants"))
    products = make_products(config, days, merchants, rng_for(seed, "products"))
    planted = plant_causes(config, days, merchants, products, rng_for(seed, "plants"))
    panels = make_panels(config, days, merchants, products, planted, rng_for(seed, "panels"))
    world = World(days, users, merchants, products, planted, panels)
    events = simulate_traffic(
        config,
        days,
        world.users,
        world.merchants,
        world.products,
        world.panels,
        rng_for(seed, "traffic"),
        progress,
    )

    step("landing events and planting flaws")
    landed = land(config, days, events, rng_for(seed, "landing"))
    del events  # the landed copy is all we need from here; medium holds millions of rows
    dependents = {
        "impressions": landed.clicked,
        "clicks": landed.click_has_order,
        "orders": np.zeros(landed.orders.n, dtype=bool),
    }
    flawed: dict[str, EventTable] = {}
    flaw_counts: dict[str, dict[str, int]] = {}
    for name in EVENT_TABLES:
        flawed[name], flaw_counts[name] = inject_flaws(
            getattr(landed, name), config, days.end_us, dependents[name], rng_for(seed, f"flaws/{name}")
        )

    step("writing parquet")
    home = settings.home_dir
    raw_tmp, oracle_tmp = home / ".raw.partial", home / ".oracle.partial"
    for folder in (raw_tmp, oracle_tmp):
        shutil.rmtree(folder, ignore_errors=True)
    rows = _write_raw(raw_tmp, config, world, flawed)
    ctr = float(landed.clicked.mean()) if len(landed.clicked) else 0.0
    cvr = landed.orders.n / max(landed.clicks.n, 1)
    auc = roc_auc(landed.clicked, landed.truth["p_click"])
    planted_json = [
        {
            "merchant_id": _format_id("merchant_id", plant.merchant + 1),
            "cause": plant.cause,
            "change_date": days.dates[plant.change_day].isoformat(),
            "magnitude": plant.magnitude,
        }
        for plant in planted
    ]
    write_oracle_truth(oracle_tmp, landed.truth)
    write_json(oracle_tmp / "planted_causes.json", planted_json)
    write_json(
        oracle_tmp / "flaw_counts.json",
        {"flaw_rate": config.flaw_rate, "tables": flaw_counts, "totals": _totals(flaw_counts)},
    )
    realised = {
        "ctr": ctr,
        "cvr": cvr,
        "oracle_auc": auc,
        "clean_rows": {name: getattr(landed, name).n for name in EVENT_TABLES},
    }
    write_json(oracle_tmp / "generative_params.json", _generative_params(config, realised))

    # swap in the new state only once everything is written
    raw_dir, oracle_dir = settings.raw_dir, settings.oracle_dir
    for final, tmp in ((raw_dir, raw_tmp), (oracle_dir, oracle_tmp)):
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)

    return Summary(
        scale=config.scale,
        seed=seed,
        start_date=config.start_date,
        end_date=config.end_date,
        raw_dir=raw_dir,
        oracle_dir=oracle_dir,
        rows=rows,
        ctr=ctr,
        cvr=cvr,
        oracle_auc=auc,
        flaw_counts=flaw_counts,
        planted=planted_json,
        seconds=time.perf_counter() - started,
    )


def _write_raw(raw_dir: Path, config: SimConfig, world: World, flawed: dict[str, EventTable]) -> dict[str, int]:
    """Every raw table, dimensions first; returns rows written per table."""
    days, seed = world.days, config.seed
    at = snapshot_us(config, days)
    last_day = int(days.start_us[-1] // DAY_US)
    calendar, names = campaign_columns(days, at)
    rows = {
        "users": write_partitioned(raw_dir, "users", users_columns(world.users, at)),
        "merchants": write_partitioned(raw_dir, "merchants", merchants_columns(world.merchants, at)),
        "products": write_partitioned(raw_dir, "products", products_columns(world.products, at)),
        "product_prices": write_partitioned(
            raw_dir,
            "product_prices",
            product_prices_columns(config, days, world.products, world.panels, rng_for(seed, "prices")),
        ),
        "merchant_daily": write_partitioned(
            raw_dir,
            "merchant_daily",
            merchant_daily_columns(config, days, world.merchants, world.panels, rng_for(seed, "merchant_daily")),
        ),
        "campaign_calendar": write_partitioned(
            raw_dir, "campaign_calendar", calendar, labels={"campaign_name": names}, empty_day=last_day
        ),
    }
    for name in EVENT_TABLES:
        rows[name] = write_partitioned(raw_dir, name, flawed[name].columns, flawed[name].nulls, empty_day=last_day)
    return rows


def _generative_params(config: SimConfig, realised: dict[str, object]) -> dict[str, object]:
    return {
        "seed": config.seed,
        "scale": config.scale,
        "start_date": config.start_date.isoformat(),
        "end_date": config.end_date.isoformat(),
        "flaw_rate": config.flaw_rate,
        "scale_spec": config.spec.model_dump(mode="json"),
        "catalog": [c.model_dump(mode="json") for c in CATALOG],
        "causes": list(CAUSES),
        "params": config.params.model_dump(mode="json"),
        "realised": realised,
    }


def _format_id(column: str, value: int) -> str:
    prefix, width = ID_FORMATS[column]
    return f"{prefix}{value:0{width}d}"


def _totals(flaw_counts: dict[str, dict[str, int]]) -> dict[str, int]:
    return {name: sum(counts.values()) for name, counts in flaw_counts.items()}
