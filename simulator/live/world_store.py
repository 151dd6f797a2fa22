"""The simulated world as `make data` drew it, persisted beside the oracle so live mode never re-draws it.

`oracle/world/world.npz` holds every entity array (latent traits included: this is oracle material, never
a feature) and the panels of the period's last day, the state the marketplace is left in; `meta.json`
holds the config that drew it and how many rows each event table landed (live ids start above them).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from simulator.campaigns import Days, build_days
from simulator.config import SimConfig
from simulator.entities import Merchants, Panels, Products, Users
from simulator.traffic import DayState

WORLD_DIR = "world"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StoredWorld:
    config: SimConfig
    days: Days
    users: Users
    merchants: Merchants
    products: Products
    last_day: DayState  # panels of the period's last day (kind: that day's)
    clean_rows: dict[str, int]  # rows each event table landed, clean: historical ids are 1..this


def world_dir(oracle_dir: Path) -> Path:
    return oracle_dir / WORLD_DIR


def save_world(
    oracle_dir: Path,
    config: SimConfig,
    days: Days,
    entities: tuple[Users, Merchants, Products, Panels],
    clean_rows: dict[str, int],
) -> Path:
    users, merchants, products, panels = entities
    folder = world_dir(oracle_dir)
    folder.mkdir(parents=True, exist_ok=True)
    last = days.n - 1
    arrays: dict[str, np.ndarray] = {}
    for prefix, obj in (("users", users), ("merchants", merchants), ("products", products)):
        for f in fields(obj):
            arrays[f"{prefix}.{f.name}"] = getattr(obj, f.name)
    state = DayState.of(panels, last, int(days.kind[last]))
    for name in ("price", "discount", "rating", "is_live"):
        arrays[f"last_day.{name}"] = getattr(state, name)
    _write_npz(folder / "world.npz", arrays)
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "config": json.loads(config.model_dump_json(exclude={"home"})),
        "clean_rows": clean_rows,
        "last_day_kind": int(days.kind[last]),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """`np.savez` with a fixed timestamp per member, so the same world gives the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


class WorldMissing(RuntimeError):
    pass


def load_world(oracle_dir: Path) -> StoredWorld:
    folder = world_dir(oracle_dir)
    if not (folder / "meta.json").is_file():
        raise WorldMissing(f"no persisted world under {folder}: run `make data` (with this version) first")
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise WorldMissing(f"{folder} has world format {meta.get('format_version')}, expected {FORMAT_VERSION}")
    config = SimConfig.model_validate(meta["config"])
    with np.load(folder / "world.npz", allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}

    def columns(cls: type, prefix: str) -> dict[str, np.ndarray]:
        return {f.name: arrays[f"{prefix}.{f.name}"] for f in fields(cls)}

    state = DayState(
        price=arrays["last_day.price"],
        discount=arrays["last_day.discount"],
        rating=arrays["last_day.rating"],
        is_live=arrays["last_day.is_live"],
        kind=int(meta["last_day_kind"]),
    )
    return StoredWorld(
        config=config,
        days=build_days(config),
        users=Users(**columns(Users, "users")),
        merchants=Merchants(**columns(Merchants, "merchants")),
        products=Products(**columns(Products, "products")),
        last_day=state,
        clean_rows={k: int(v) for k, v in meta["clean_rows"].items()},
    )
