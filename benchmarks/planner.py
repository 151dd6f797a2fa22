"""`make bench-planner`: the campaign what-if planner's predicted uplifts against the simulator's oracle.

For each (scale, seed) a home is built once under `--root` (`make data features`: the merchant panels and the
marts the planner reads). The planner is fitted once per home; then for each merchant of a deterministic sample
and each upcoming campaign (`--campaigns`, the next date of each after the data), the same fixed scenarios are
forecast by

* **the planner** (`merchant_growth.planner.plan`),
* **the oracle** (`simulator.campaign_oracle`: the merchant's expected GMV on that date under the same resolved
  levers, through the simulator's own exposure x true-rate model, no sampling noise), and
* **the naive planner**: the merchant's uplift on its last campaign day of the same kind in the history (the last
  mega sale for a mega sale, else the last campaign day), GMV that day over its mean GMV on the 7 ordinary days
  before it, applied to every scenario. It does not see levers, so it predicts no lever uplift.

Two uplifts per scenario: **vs an ordinary day** (GMV of the scenario on the campaign date / the do-nothing GMV of
the same date as an ordinary day - 1: what a merchant plans with, and what the naive planner predicts), and **vs
doing nothing** on the campaign day (the lever's own effect). Reported: mean absolute error of each (percentage
points), by lever group, planner vs naive; the Spearman rank correlation of the scenarios' GMV with the oracle's,
per merchant and campaign (the naive planner ranks nothing: all its scenarios tie); and how often the planner's
95% interval of the lever uplift holds the oracle's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from benchmarks.diagnose import build_home
from merchant_growth.data import merchant_funnel_relation, query
from merchant_growth.plan_schemas import Levers, PlanRequest
from merchant_growth.planner import PlannerModel, day_kind, fit_planner, plan
from platform_common.settings import Settings
from simulator.campaign_oracle import CampaignOracle
from simulator.campaign_oracle import Levers as OracleLevers

# (name, lever group, levers); discount None = the merchant's recent mean (do nothing)
SCENARIOS: tuple[tuple[str, str, dict[str, float | bool]], ...] = (
    ("do nothing", "do nothing", {}),
    ("discount 0.10", "discount", {"discount": 0.10}),
    ("discount 0.20", "discount", {"discount": 0.20}),
    ("discount 0.35", "discount", {"discount": 0.35}),
    ("discount 0.50", "discount", {"discount": 0.50}),
    ("go live", "live", {"live": True}),
    ("price -20%", "price", {"price_change": -0.20}),
    ("price -10%", "price", {"price_change": -0.10}),
    ("price +10%", "price", {"price_change": 0.10}),
    ("price +20%", "price", {"price_change": 0.20}),
    ("traffic x0.8", "traffic share", {"traffic_share": 0.8}),
    ("traffic x1.5", "traffic share", {"traffic_share": 1.5}),
    ("discount 0.35, live", "combined", {"discount": 0.35, "live": True}),
    ("discount 0.20, price +10%, live", "combined", {"discount": 0.20, "price_change": 0.10, "live": True}),
)
BOOST_SCENARIOS = (("boost 0.3", "new-merchant boost", {"new_merchant_boost": 0.3}),)
KIND_INDEX = {"normal": 0, "campaign": 1, "mega": 2}


@dataclass
class Row:
    scale: str
    seed: int
    merchant_id: str
    campaign: str
    campaign_date: str
    scenario: str
    group: str
    planner_gmv: float
    oracle_gmv: float
    planner_vs_normal: float
    oracle_vs_normal: float
    naive_vs_normal: float
    planner_vs_nothing: float
    planner_vs_nothing_low: float
    planner_vs_nothing_high: float
    oracle_vs_nothing: float


def naive_uplift(settings: Settings, merchant_id: str, kind: str, end: date) -> float | None:
    """The merchant's last campaign day's GMV (of `kind` if the history has one) over its 7 ordinary days before."""
    daily = query(
        f"select activity_date, sum(gmv) gmv from {merchant_funnel_relation(settings)} where merchant_id = ? "
        "group by 1 order by 1",
        [merchant_id],
    )
    gmv = dict(zip(daily["activity_date"], daily["gmv"], strict=True))
    days = sorted(gmv)
    campaign_days = [d for d in days if day_kind(d) != "normal"]
    same = [d for d in campaign_days if day_kind(d) == kind]
    pick = (same or campaign_days or [None])[-1]
    if pick is None:
        return None
    before = [pick - timedelta(days=i) for i in range(1, 15)]
    ordinary = [gmv.get(d, 0.0) for d in before if d >= days[0] and day_kind(d) == "normal"][:7]
    base = float(np.mean(ordinary)) if ordinary else 0.0
    return float(gmv.get(pick, 0.0) / base - 1.0) if base > 0 else None


def sample_merchants(settings: Settings, n: int, seed: int) -> list[str]:
    """Merchants with orders on at least half of the days (a plan needs a funnel), `n` of them at random."""
    frame = query(
        f"select merchant_id, count(distinct activity_date) filter (where orders > 0) d, "
        f"count(distinct activity_date) n from {merchant_funnel_relation(settings)} group by 1 order by 1"
    )
    eligible = frame.loc[frame["d"] >= frame["n"] / 2, "merchant_id"].tolist()
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(eligible, size=min(n, len(eligible)), replace=False).tolist())


def run_home(settings: Settings, scale: str, seed: int, n_merchants: int, campaigns: list[str]) -> list[Row]:
    model = fit_planner(settings)
    oracle = CampaignOracle.from_home(settings.home_dir)
    rows: list[Row] = []
    merchants = sample_merchants(settings, n_merchants, seed)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"{scale} seed {seed}", total=len(merchants) * len(campaigns))
        for merchant_id in merchants:
            for campaign in campaigns:
                rows += _merchant_campaign(settings, model, oracle, scale, seed, merchant_id, campaign)
                progress.advance(task)
    return rows


def _merchant_campaign(
    settings: Settings,
    model: PlannerModel,
    oracle: CampaignOracle,
    scale: str,
    seed: int,
    merchant_id: str,
    campaign: str,
) -> list[Row]:
    probe = plan(
        PlanRequest(merchant_id=merchant_id, campaign=campaign, scenarios=[Levers(name="x")]), settings, model=model
    )
    specs = SCENARIOS + (BOOST_SCENARIOS if probe.new_merchant else ())
    scenarios = [Levers(name=name, **levers) for name, _, levers in specs]
    response = plan(PlanRequest(merchant_id=merchant_id, campaign=campaign, scenarios=scenarios), settings, model=model)
    day = response.campaign_date
    naive = naive_uplift(settings, merchant_id, response.day_kind, response.data_end)

    def truth(lv: OracleLevers, kind: int | None = None) -> float:
        return oracle.funnel(merchant_id, day, lv, kind=kind).gmv

    dn = response.do_nothing
    nothing = OracleLevers(dn.discount, dn.live, dn.price_change, dn.new_merchant_boost, dn.traffic_share)
    oracle_normal = truth(nothing, KIND_INDEX["normal"])
    oracle_nothing = truth(nothing)
    out = []
    for (name, group, _), result in zip(specs, response.scenarios, strict=True):
        lv = result.levers
        g = truth(OracleLevers(lv.discount, lv.live, lv.price_change, lv.new_merchant_boost, lv.traffic_share))
        out.append(
            Row(
                scale,
                seed,
                merchant_id,
                campaign,
                day.isoformat(),
                name,
                group,
                result.gmv.value,
                g,
                result.uplift_vs_normal_day.value,
                g / oracle_normal - 1.0,
                float("nan") if naive is None else naive,
                result.uplift_vs_do_nothing.value,
                result.uplift_vs_do_nothing.low,
                result.uplift_vs_do_nothing.high,
                g / oracle_nothing - 1.0,
            )
        )
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def tables(rows: list[Row]) -> str:
    frame = pd.DataFrame([asdict(r) for r in rows])
    frame["err_planner_normal"] = (frame["planner_vs_normal"] - frame["oracle_vs_normal"]).abs() * 100
    frame["err_naive_normal"] = (frame["naive_vs_normal"] - frame["oracle_vs_normal"]).abs() * 100
    frame["err_planner_nothing"] = (frame["planner_vs_nothing"] - frame["oracle_vs_nothing"]).abs() * 100
    frame["err_naive_nothing"] = frame["oracle_vs_nothing"].abs() * 100  # the naive planner predicts no lever uplift
    frame["covered"] = (frame["planner_vs_nothing_low"] <= frame["oracle_vs_nothing"] + 1e-9) & (
        frame["oracle_vs_nothing"] - 1e-9 <= frame["planner_vs_nothing_high"]
    )
    out = []
    out.append(
        "| scale | seeds | merchants x campaigns | lever | scenarios | MAE uplift vs ordinary day, planner (pp) | "
        "naive (pp) | MAE lever uplift vs doing nothing, planner (pp) | naive (pp) | mean oracle lever uplift (%) | "
        "95% interval holds the oracle |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for scale, by_scale in frame.groupby("scale", sort=False):
        seeds = ", ".join(str(s) for s in sorted(by_scale["seed"].unique()))
        pairs = by_scale.groupby(["seed", "merchant_id", "campaign"]).ngroups
        for group, g in list(by_scale.groupby("group", sort=False)) + [("all", by_scale)]:
            lever = g[g["group"] != "do nothing"]
            naive = g.dropna(subset=["naive_vs_normal"])
            out.append(
                f"| {scale} | {seeds} | {pairs} | {group} | {len(g)} | {g['err_planner_normal'].mean():.1f} | "
                f"{naive['err_naive_normal'].mean():.1f} | "
                + (
                    f"{lever['err_planner_nothing'].mean():.1f} | {lever['err_naive_nothing'].mean():.1f} | "
                    f"{lever['oracle_vs_nothing'].mean() * 100:+.1f} | {lever['covered'].mean():.0%} |"
                    if len(lever)
                    else "— | — | — | — |"
                )
            )
    out.append("")
    out.append(
        "| scale | seed | merchant x campaign plans | Spearman of scenarios, planner: mean | min | naive | "
        "MAE vs ordinary day, planner / naive (pp) |"
    )
    out.append("|---|---|---|---|---|---|---|")
    for (scale, seed), g in frame.groupby(["scale", "seed"], sort=False):
        rho = [
            spearman(p["planner_gmv"].to_numpy(), p["oracle_gmv"].to_numpy())
            for _, p in g.groupby(["merchant_id", "campaign"])
        ]
        naive = g.dropna(subset=["naive_vs_normal"])
        out.append(
            f"| {scale} | {seed} | {len(rho)} | {np.nanmean(rho):.3f} | {np.nanmin(rho):.3f} | all tied (no ranking) | "
            f"{g['err_planner_normal'].mean():.1f} / {naive['err_naive_normal'].mean():.1f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("SHOPRANK_HOME", ".state")) / "bench-planner")
    parser.add_argument("--scales", default="tiny,small")
    parser.add_argument("--seeds", default="7,42,123")
    parser.add_argument("--merchants", type=int, default=20, help="merchants planned per home")
    parser.add_argument("--campaigns", default="12.12,payday")
    parser.add_argument("--end-date", default="2026-11-30")
    parser.add_argument("--json", type=Path, default=None, help="also write every scenario row here")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for scale in args.scales.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            settings = build_home(args.root, scale, seed, args.end_date)
            rows += run_home(settings, scale, seed, args.merchants, args.campaigns.split(","))
            print(f"{scale} seed {seed}: {len(rows)} scenario rows so far", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    print(tables(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
