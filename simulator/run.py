"""`generate(config)`: simulate the marketplace and (re)write `raw/` and `oracle/` under the home folder.

The event tables stream day by day through `simulator.pipeline`; the dimensions and daily panels are
written here. Peak memory follows the size of one day and of the catalogue, not of the period.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
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
from simulator.live.world_store import save_world
from simulator.merchant_panel import World as PanelWorld
from simulator.merchant_panel import write_panel
from simulator.pipeline import stream_events
from simulator.tables import (
    Columns,
    campaign_columns,
    merchant_daily_days,
    merchants_columns,
    product_prices_days,
    products_columns,
    snapshot_us,
    users_columns,
)
from simulator.traffic import ProgressFn
from simulator.writer import ID_FORMATS, PartitionedTable, write_json, write_partitioned


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
    merchant_panel: dict[str, float] = {}  # GMV concentration and volume of the merchant funnel panels


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

    home = settings.home_dir
    raw_tmp, oracle_tmp = home / ".raw.partial", home / ".oracle.partial"
    for folder in (raw_tmp, oracle_tmp):
        shutil.rmtree(folder, ignore_errors=True)
    oracle_tmp.mkdir(parents=True)
    stats = stream_events(
        config,
        days,
        (users, merchants, products, panels),
        raw_tmp,
        oracle_tmp,
        home / ".spool.partial",
        progress,
    )
    # live mode (`simulator.live`) replays this very world, so it is kept beside the oracle
    save_world(oracle_tmp, config, days, (users, merchants, products, panels), stats.clean_rows)
    step("writing dimensions")
    rows = _write_dimensions(raw_tmp, config, world) | stats.rows
    planted_json = [
        {
            "merchant_id": _format_id("merchant_id", plant.merchant + 1),
            "cause": plant.cause,
            "change_date": days.dates[plant.change_day].isoformat(),
            "magnitude": plant.magnitude,
        }
        for plant in planted
    ]
    flaw_counts = stats.flaw_counts
    write_json(oracle_tmp / "planted_causes.json", planted_json)
    write_json(
        oracle_tmp / "flaw_counts.json",
        {"flaw_rate": config.flaw_rate, "tables": flaw_counts, "totals": _totals(flaw_counts)},
    )
    realised = {
        "ctr": stats.ctr,
        "cvr": stats.cvr,
        "oracle_auc": stats.oracle_auc,
        "clean_rows": stats.clean_rows,
    }
    write_json(oracle_tmp / "generative_params.json", _generative_params(config, realised))

    # swap in the new state only once everything is written
    raw_dir, oracle_dir = settings.raw_dir, settings.oracle_dir
    for final, tmp in ((raw_dir, raw_tmp), (oracle_dir, oracle_tmp)):
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    # the merchant-analytics warehouse's funnel panels of a larger marketplace, from the same world; its own
    # random stream, so raw/ and oracle/ are the same bytes with or without it
    step("drawing merchant funnel panels")
    panel = write_panel(home, config, PanelWorld(days, users, merchants, products, planted, panels))

    return Summary(
        scale=config.scale,
        seed=seed,
        start_date=config.start_date,
        end_date=config.end_date,
        raw_dir=raw_dir,
        oracle_dir=oracle_dir,
        rows=rows,
        ctr=stats.ctr,
        cvr=stats.cvr,
        oracle_auc=stats.oracle_auc,
        flaw_counts=flaw_counts,
        planted=planted_json,
        seconds=time.perf_counter() - started,
        merchant_panel=panel,
    )


def _write_dimensions(raw_dir: Path, config: SimConfig, world: World) -> dict[str, int]:
    """Every raw table but the events; returns rows written per table."""
    days, seed = world.days, config.seed
    at = snapshot_us(config, days)
    last_day = int(days.start_us[-1] // DAY_US)
    calendar, names = campaign_columns(days, at)
    rows = {
        "users": write_partitioned(raw_dir, "users", users_columns(world.users, at)),
        "merchants": write_partitioned(raw_dir, "merchants", merchants_columns(world.merchants, at)),
        "products": write_partitioned(raw_dir, "products", products_columns(world.products, at)),
        "product_prices": _write_daily(
            raw_dir,
            "product_prices",
            product_prices_days(config, days, world.products, world.panels, rng_for(seed, "prices")),
            days,
        ),
        "merchant_daily": _write_daily(
            raw_dir,
            "merchant_daily",
            merchant_daily_days(config, days, world.merchants, world.panels, rng_for(seed, "merchant_daily")),
            days,
        ),
        "campaign_calendar": write_partitioned(
            raw_dir, "campaign_calendar", calendar, labels={"campaign_name": names}, empty_day=last_day
        ),
    }
    return rows


def _write_daily(raw_dir: Path, name: str, batches: Iterator[tuple[int, Columns]], days: Days) -> int:
    """A daily snapshot table, each day's partition written as soon as its day is done."""
    table = PartitionedTable(raw_dir, name)
    for d, columns in batches:
        table.add(columns)
        # every snapshot lands within its own day
        table.flush(int(days.start_us[d] // DAY_US))
    return table.close(int(days.start_us[-1] // DAY_US))


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
