"""`make bench-experiments`: the experiment analysis proven on the simulator (issue 16, section 4).

The analysis a team reads (`serving/experiments/analysis.py::analyse`, the same function `make
experiment-report` runs) is fed experiments whose truth is known, many times over:

- A/A: the champion in both arms, over `--aa-runs` salts (each run its own salt and its own requests): how
  often a 5% test calls a difference that does not exist, and how often the sample-ratio test fires.
- Coverage: the champion against a clearly worse ranker (random order) and a better one (the oracle's order
  by true expected GMV), `--coverage-runs` times each: is the lift's sign right, and does its 95% interval
  cover the oracle's true lift for the same served lists?
- Sensitivity: champion vs the better ranker at growing sample sizes, as an A/B test and as team-draft
  interleaving: the requests each needs to detect the difference with 80% power.

Requests are served in process, not over HTTP: the champion scores each session's candidates exactly as the
service does (`serving.ranking`: the in-memory feature snapshot, the bundle, the GMV objective), the shoppers
react through the simulator's live model (`simulator.live.session.react`: true probabilities at the served
slots, position bias, the same draws as `make live`). Scoring is the expensive part, so a pool of sessions is
drawn and scored once and every run samples its requests from the pool (without replacement within a run)
and draws fresh outcomes: each run is an experiment on the pool's population of sessions. The pool spans a
whole day of arrivals, so hours of the day vary as they do live.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer
from rich.progress import Progress

from platform_common.feast_config import get_feature_store
from platform_common.settings import Settings, get_settings
from serving.calendar import load_campaign_days
from serving.champion import LoadedModel, load_champion
from serving.experiments.analysis import Design, analyse
from serving.experiments.assignment import Assigner
from serving.experiments.interleaving import coin_seed, team_draft
from serving.features.base import FeatureReader
from serving.features.factory import make_reader
from serving.ranking import context_columns
from serving.scoring import score_matrix
from simulator.campaigns import DAY_US
from simulator.config import SURFACES
from simulator.entities import SECOND_US
from simulator.live.session import LiveMarket, Served, SessionBatch, candidate_truth, draw_sessions, react
from simulator.live.world_store import load_world

ALPHA = 0.05
SRM_ALPHA = 0.001
CONTROL, TREATMENT = "control", "treatment"

app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0] if __doc__ else None)


# ------------------------------------------------------------------------------------------------------------
# The pool: sessions drawn once, each ranker's order of every session's candidates computed once
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    market: LiveMarket
    batch: SessionBatch
    answered_us: np.ndarray  # per session
    orders: dict[str, list[np.ndarray]]  # ranker -> per session, candidate indices best first


def _subset(batch: SessionBatch, idx: np.ndarray) -> SessionBatch:
    lengths = np.diff(batch.offsets)[idx]
    rows = np.concatenate([np.arange(batch.offsets[i], batch.offsets[i + 1]) for i in idx])
    return SessionBatch(
        user=batch.user[idx],
        surface=batch.surface[idx],
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        product=batch.product[rows],
        click_noise=batch.click_noise[rows],
        order_noise=batch.order_noise[rows],
        session=batch.session[idx],
        page=batch.page[idx],
        pages=batch.pages[idx],
        intent=batch.intent[idx],
        interest=batch.interest[idx],
    )


def _concat(batches: list[SessionBatch]) -> SessionBatch:
    offsets = [np.array([0], dtype=np.int64)]
    base = 0
    for b in batches:
        offsets.append(b.offsets[1:] + base)
        base += int(b.offsets[-1])
    return SessionBatch(
        user=np.concatenate([b.user for b in batches]),
        surface=np.concatenate([b.surface for b in batches]),
        offsets=np.concatenate(offsets),
        product=np.concatenate([b.product for b in batches]),
        click_noise=np.concatenate([b.click_noise for b in batches]),
        order_noise=np.concatenate([b.order_noise for b in batches]),
        session=np.concatenate([b.session for b in batches]),
        page=np.concatenate([b.page for b in batches]),
        pages=np.concatenate([b.pages for b in batches]),
        intent=np.concatenate([b.intent for b in batches]),
        interest=np.concatenate([b.interest for b in batches]),
    )


def oracle_values(market: LiveMarket, batch: SessionBatch, answered_us: np.ndarray) -> np.ndarray:
    """Each candidate's true expected GMV if examined (attraction x P(order | click) x value): the order by it
    is the best any ranker can serve, since examination only falls with the slot."""
    session = np.repeat(np.arange(batch.n), np.diff(batch.offsets))
    rows = np.arange(len(batch.product))
    truth = candidate_truth(market, batch, rows, batch.user[session], batch.surface[session], answered_us[session])
    return np.asarray(truth.attraction * truth.p_order * truth.expected_value, dtype=np.float64)


def champion_orders(
    model: LoadedModel, reader: FeatureReader, batch: SessionBatch, answered_us: np.ndarray, campaign_days: frozenset
) -> list[np.ndarray]:
    """The service's ranking of every session (serving.ranking's matrix and scores, objective gmv, no boost),
    in process. The feature rows are built per session as the service builds them, then scored in blocks:
    XGBoost's fixed cost per call is most of a ten-candidate request's scoring time."""
    spec = model.bundle.spec
    assert spec is not None
    out: list[np.ndarray] = []
    block = 2_000
    with Progress(transient=True) as progress:
        task = progress.add_task("champion scores the pool", total=batch.n)
        for lo in range(0, batch.n, block):
            mats, prices = [], []
            for i in range(lo, min(lo + block, batch.n)):
                now = datetime.fromtimestamp(answered_us[i] / SECOND_US, UTC)
                ids = [f"p{p + 1:06d}" for p in batch.candidates(i)]
                vectors = reader.fetch(f"u{batch.user[i] + 1:07d}", ids, now=now)
                context = context_columns(SURFACES[batch.surface[i]], len(ids), now, now.date() in campaign_days)
                mats.append(vectors.model_matrix(spec, context, len(ids)))
                prices.append(np.array([np.nan if v is None else v for v in vectors.columns["price"]], dtype=float))
            x = np.vstack(mats)
            scores = score_matrix(model.bundle, x)
            gmv = model.bundle.expected_gmv(scores["pctcvr"], np.concatenate(prices), x)
            at = 0
            for m in mats:
                out.append(np.argsort(-gmv[at : at + len(m)], kind="stable"))
                at += len(m)
            progress.advance(task, len(mats))
    return out


def build_pool(settings: Settings, size: int, seed: int, start: datetime) -> Pool:
    world = load_world(settings.oracle_dir)
    start_us = int(start.timestamp() * SECOND_US)
    market = LiveMarket(world, start_us)
    rng = np.random.default_rng(seed)
    chunks, times = [], []
    n_chunks = 48  # half-hourly arrivals over a day: who shops, and their local hours, follow the clock
    per = -(-size // n_chunks)
    for k in range(n_chunks):
        t = start_us + k * (DAY_US // n_chunks)
        b = draw_sessions(rng, market, per, t, first_session=k * per)  # first pages: intent, no clicks yet
        chunks.append(b)
        times.append(t + np.sort(rng.integers(0, DAY_US // n_chunks, b.n)))
    batch, answered_us = _concat(chunks), np.concatenate(times)
    model = load_champion(settings)
    assert model.bundle.spec is not None
    reader = make_reader(lambda: get_feature_store(settings), model.bundle.spec.feature_service, mode="snapshot")
    campaign_days = load_campaign_days(settings.marts_dir)
    orders = {"champion": champion_orders(model, reader, batch, answered_us, campaign_days)}
    values = oracle_values(market, batch, answered_us)
    orders["oracle"] = [
        np.argsort(-values[batch.offsets[i] : batch.offsets[i + 1]], kind="stable") for i in range(batch.n)
    ]
    return Pool(market, batch, answered_us, orders)


# ------------------------------------------------------------------------------------------------------------
# One experiment on the pool: serve, react, build the frames the analysis reads, analyse
# ------------------------------------------------------------------------------------------------------------


def _ranking(pool: Pool, ranker: str, i: int, rng: np.random.Generator) -> np.ndarray:
    if ranker == "random":
        return rng.permutation(pool.batch.offsets[i + 1] - pool.batch.offsets[i])
    if ranker == "reversed":  # the champion's order upside down: clearly worse, by construction
        return pool.orders["champion"][i][::-1]
    return pool.orders[ranker][i]


def run_experiment(
    pool: Pool,
    design: str,
    control: str,
    treatment: str,
    n: int,
    salt: str,
    rng: np.random.Generator,
    window: timedelta = timedelta(days=2),
) -> dict[str, Any]:
    idx = np.sort(rng.integers(0, pool.batch.n, size=n))  # i.i.d. draws from the pool's population
    users = [f"u{u + 1:07d}" for u in pool.batch.user[idx]]
    request_ids = [f"{salt}-{k}" for k in range(n)]
    assigner = Assigner(salt, (CONTROL, TREATMENT), (0.5, 0.5))
    arm_of: list[str] = []
    credit: list[str] = []
    served_rows: list[np.ndarray] = []
    for k, i in enumerate(idx):
        cands = pool.batch.candidates(int(i))
        if design == "ab":
            arm = assigner.arm(users[k])
            order = _ranking(pool, control if arm == CONTROL else treatment, int(i), rng)
            served_rows.append(cands[order])
            credit.extend([arm] * len(order))
            arm_of.append(arm)
        else:
            a = _ranking(pool, control, int(i), rng).tolist()
            b = _ranking(pool, treatment, int(i), rng).tolist()
            merged, teams = team_draft(a, b, coin_seed(salt, request_ids[k]))
            served_rows.append(cands[np.asarray(merged)])
            credit.extend(CONTROL if t == 0 else TREATMENT for t in teams)
            arm_of.append("interleaved")
    sub = _subset(pool.batch, idx)
    lengths = np.array([len(r) for r in served_rows])
    served = Served(
        session=np.arange(n),
        answered_us=pool.answered_us[idx],
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        product=np.concatenate(served_rows),
    )
    out = react(rng, pool.market, sub, served)
    exposures, outcomes, truth = frames(out, served, request_ids, users, arm_of, credit)
    start = pd.Timestamp(int(pool.answered_us.min()), unit="us", tz="UTC").to_pydatetime()
    end = start + timedelta(days=1)
    d = Design(
        id=salt,
        design=design,
        shares={CONTROL: 0.5, TREATMENT: 0.5},
        control=CONTROL,
        treatment=TREATMENT,
        start=start,
        end=end,
        planned_stop=end,
    )
    result = analyse(d, exposures, outcomes, truth, window=window, watermark=end + timedelta(days=3), now=end)
    s = result.summary
    row: dict[str, Any] = {"design": design, "control": control, "treatment": treatment, "requests": n, "salt": salt}
    gmv = s.metrics["gmv_per_request"]
    row.update(lift=gmv.lift, ci_low=gmv.ci_low, ci_high=gmv.ci_high, p_value=gmv.p_value, true_lift=gmv.true_lift)
    row["srm_p_value"] = s.srm_p_value
    if result.interleaving is not None:
        g = result.interleaving.set_index("outcome").loc["gmv"]
        row.update(share=g["treatment_share"], share_low=g["ci_low"], share_high=g["ci_high"], share_p=g["p_value"])
        row["true_share"] = g["true_share"]
    return row


def frames(
    out: Any, served: Served, request_ids: list[str], users: list[str], arm_of: list[str], credit: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The exposure log, the landed outcomes and the oracle's truth, as `make experiment-report` reads them."""
    rid = np.array(request_ids, dtype=object)[out.imp_answer]
    pid = np.array([f"p{p + 1:06d}" for p in out.imp_product], dtype=object)
    served_at = pd.to_datetime(served.answered_us[out.imp_answer], unit="us", utc=True)
    exposures = pd.DataFrame(
        {
            "request_id": rid,
            "served_at": served_at,
            "user_id": np.array(users, dtype=object)[out.imp_answer],
            "arm": np.array(arm_of, dtype=object)[out.imp_answer],
            "position": out.imp_position,
            "product_id": pid,
            "credit_arm": np.array(credit, dtype=object),
        }
    )
    clk = out.clicked
    ordered = clk[out.ordered]
    outcomes = pd.concat(
        [
            pd.DataFrame(
                {
                    "request_id": rid[clk],
                    "product_id": pid[clk],
                    "kind": "click",
                    "event_ts": pd.to_datetime(out.clk_ts, unit="us", utc=True),
                    "gmv": 0.0,
                }
            ),
            pd.DataFrame(
                {
                    "request_id": rid[ordered],
                    "product_id": pid[ordered],
                    "kind": "order",
                    "event_ts": pd.to_datetime(out.ord_ts, unit="us", utc=True),
                    "gmv": out.quantity * out.unit_price,
                }
            ),
        ],
        ignore_index=True,
    )
    truth = pd.DataFrame(
        {
            "request_id": rid,
            "product_id": pid,
            "p_click": out.p_click,
            "p_order_given_click": out.p_order,
            "expected_gmv": out.p_click * out.p_order * out.expected_value,
        }
    )
    return exposures, outcomes, truth


# ------------------------------------------------------------------------------------------------------------
# The three studies
# ------------------------------------------------------------------------------------------------------------


def _runs(pool: Pool, label: str, specs: list[tuple[str, str, str, int, str]], seed: int) -> list[dict[str, Any]]:
    rows = []
    t0 = time.perf_counter()
    with Progress(transient=True) as progress:
        task = progress.add_task(label, total=len(specs))
        for k, (design, control, treatment, n, salt) in enumerate(specs):
            rng = np.random.default_rng([seed, k, _stable_seed(label)])
            rows.append(run_experiment(pool, design, control, treatment, n, salt, rng))
            progress.advance(task)
    typer.echo(f"{label}: {len(specs)} runs in {time.perf_counter() - t0:.0f} s")
    return rows


def _stable_seed(label: str) -> int:
    return int.from_bytes(label.encode()[:8].ljust(8, b"\0"), "big") % (2**31)


def power_at(rows: pd.DataFrame, design: str) -> pd.DataFrame:
    """Share of runs that detect the (positive) difference at ALPHA, per sample size."""
    sub = rows[rows["design"] == design]
    if design == "ab":
        hit = (sub["p_value"] < ALPHA) & (sub["lift"] > 0)
    else:
        hit = (sub["share_p"] < ALPHA) & (sub["share"] > 0.5)
    return sub.assign(hit=hit).groupby("requests")["hit"].mean().rename("power").reset_index()


def requests_for_power(power: pd.DataFrame, target: float = 0.8) -> float:
    """Smallest sample size reaching `target` power, interpolated on log(n) between the grid points."""
    p = power.sort_values("requests")
    n, pw = p["requests"].to_numpy(float), p["power"].to_numpy(float)
    above = np.nonzero(pw >= target)[0]
    if len(above) == 0:
        return math.inf
    j = int(above[0])
    if j == 0:
        return float(n[0])
    x0, x1, y0, y1 = math.log(n[j - 1]), math.log(n[j]), pw[j - 1], pw[j]
    return float(math.exp(x0 + (target - y0) / (y1 - y0) * (x1 - x0))) if y1 > y0 else float(n[j])


def _grid(text: str) -> list[int]:
    try:
        grid = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise typer.BadParameter(f"a grid is comma-separated request counts, got {text!r}") from None
    if not grid or grid[0] < 100:
        raise typer.BadParameter(f"a grid needs request counts of at least 100, got {text!r}")
    return grid


@app.command()
def main(
    home: Path = typer.Option(None, help="State folder (default: SHOPRANK_HOME)."),
    pool_size: int = typer.Option(40_000, help="Sessions drawn and scored once; runs draw from them i.i.d."),
    aa_requests: int = typer.Option(20_000, help="Requests per A/A run."),
    aa_runs: int = typer.Option(40, help="A/A runs, each with its own salt."),
    coverage_requests: int = typer.Option(80_000, help="Requests per coverage run."),
    coverage_runs: int = typer.Option(20, help="Runs per comparison for sign and coverage."),
    worse: str = typer.Option("reversed,random", help="The worse rankers: reversed (champion upside down), random."),
    power_runs: int = typer.Option(30, help="Runs per design and sample size for power."),
    ab_grid: str = typer.Option("20000,80000", help="A/B sample sizes (requests) measured."),
    interleaving_grid: str = typer.Option("500,1000,2000,4000,8000", help="Interleaving sample sizes measured."),
    seed: int = typer.Option(0, help="Seed of the pool and the runs."),
    out: Path = typer.Option(None, help="JSON results (default: $SHOPRANK_HOME/benchmarks/experiments.json)."),
) -> None:
    settings = get_settings() if home is None else Settings(home=home)
    worse_rankers = [w.strip() for w in worse.split(",") if w.strip()]
    unknown = sorted(set(worse_rankers) - {"reversed", "random"})
    if unknown:
        raise typer.BadParameter(f"unknown worse ranker(s) {unknown}: use reversed, random")
    grids = {"ab": _grid(ab_grid), "interleaving": _grid(interleaving_grid)}
    t0 = time.perf_counter()
    world = load_world(settings.oracle_dir)
    start = datetime.fromtimestamp(int(world.days.start_us[-1]) / SECOND_US + 86400, UTC)
    typer.echo(f"pool: {pool_size:,} sessions over {start:%Y-%m-%d} (seed {seed})")
    pool = build_pool(settings, pool_size, seed, start)
    t_pool = time.perf_counter() - t0

    aa = _runs(pool, "A/A", [("ab", "champion", "champion", aa_requests, f"aa-{k}") for k in range(aa_runs)], seed)
    # interleaving's A/A at its smallest and largest sizes: the share test must not call a tie a win
    aa_il = _runs(
        pool,
        "A/A interleaving",
        [
            ("interleaving", "champion", "champion", n, f"aail-{n}-{k}")
            for n in grids["interleaving"][::2]
            for k in range(aa_runs)
        ],
        seed + 3,
    )
    cov = _runs(
        pool,
        "coverage",
        [
            ("ab", "champion", t, coverage_requests, f"cov-{t}-{k}")
            for t in [*worse_rankers, "oracle"]
            for k in range(coverage_runs)
        ],
        seed + 1,
    )
    powr = _runs(
        pool,
        "power",
        [
            (d, "champion", "oracle", n, f"pow-{d}-{n}-{k}")
            for d, grid in grids.items()
            for n in grid
            for k in range(power_runs)
        ],
        seed + 2,
    )
    result = summarise(pd.DataFrame(aa), pd.DataFrame(cov), pd.DataFrame(powr))
    il = pd.DataFrame(aa_il)
    result["aa_interleaving"] = [
        {"requests": int(n), "runs": len(g), "false_positive_rate": float((g["share_p"] < ALPHA).mean())}
        for n, g in il.groupby("requests")
    ]
    result.update(
        home=str(settings.home_dir),
        pool_sessions=int(pool.batch.n),
        pool_seconds=round(t_pool, 1),
        total_seconds=round(time.perf_counter() - t0, 1),
        aa_requests=aa_requests,
        coverage_requests=coverage_requests,
        seed=seed,
        day=f"{start:%Y-%m-%d}",
        users=int(world.users.n),
        products=int(world.products.n),
    )
    path = out or settings.home_dir / "benchmarks" / "experiments.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    typer.echo(json.dumps(result, indent=2, default=float))
    typer.echo(f"wrote {path}")


def extrapolated_requests(rows: pd.DataFrame, target: float = 0.8) -> dict[str, float]:
    """A/B's sample size for `target` power from the measured spread of the estimated log-lift: the spread
    falls as 1/sqrt(n) (checked: the ratio of the spreads at the grid's ends against the square root of the
    ratio of their sizes), and power is reached when |mean log-lift| = (z_alpha/2 + z_power) x spread."""
    from scipy import stats as st

    z = float(st.norm.ppf(1 - ALPHA / 2) + st.norm.ppf(target))
    log_lift = np.log1p(rows["lift"].astype(float))
    by_n = rows.assign(log_lift=log_lift).groupby("requests")["log_lift"].agg(["mean", "std"])
    n_lo, n_hi = float(by_n.index.min()), float(by_n.index.max())
    sd_hi, effect = float(by_n.loc[n_hi, "std"]), abs(float(np.log1p(rows["true_lift"].astype(float)).mean()))
    spread_ratio = float(by_n.loc[n_lo, "std"] / sd_hi) if n_hi > n_lo else math.nan
    expected = math.sqrt(n_hi / n_lo) if n_hi > n_lo else math.nan
    # The law only holds while requests, not users, are the noise: with few users the spread stops shrinking
    # (each arm's users are a fixed draw) and no number of requests reaches the power. Then say so.
    holds = math.isfinite(spread_ratio) and abs(math.log(spread_ratio / expected)) < math.log(1.25)
    return {
        "requests": n_hi * (z * sd_hi / effect) ** 2 if effect > 0 and holds else math.inf,
        "sqrt_law_holds": holds,
        "spread_ratio": spread_ratio,
        "expected_spread_ratio": expected,
        "true_log_lift": effect,
    }


def summarise(aa: pd.DataFrame, cov: pd.DataFrame, powr: pd.DataFrame) -> dict[str, Any]:
    res: dict[str, Any] = {
        "aa": {
            "runs": len(aa),
            "false_positive_rate": float((aa["p_value"] < ALPHA).mean()),
            "srm_flagged": int((aa["srm_p_value"] < SRM_ALPHA).sum()),
            "mean_abs_lift": float(aa["lift"].abs().mean()),
        }
    }
    res["coverage"] = {}
    for t, g in cov.groupby("treatment"):
        covered = (g["ci_low"] <= g["true_lift"]) & (g["true_lift"] <= g["ci_high"])
        res["coverage"][str(t)] = {
            "runs": len(g),
            "mean_lift": float(g["lift"].mean()),
            "mean_true_lift": float(g["true_lift"].mean()),
            "right_sign": float((np.sign(g["lift"]) == np.sign(g["true_lift"])).mean()),
            "significant_right_sign": float(
                ((g["p_value"] < ALPHA) & (np.sign(g["lift"]) == np.sign(g["true_lift"]))).mean()
            ),
            "coverage": float(covered.mean()),
        }
    curves = {d: power_at(powr, d) for d in ("ab", "interleaving")}
    res["power"] = {d: c.to_dict(orient="records") for d, c in curves.items()}
    ab = powr[powr["design"] == "ab"]
    measured_ab = requests_for_power(curves["ab"])
    extrapolated = extrapolated_requests(ab)
    needed = {
        "ab": measured_ab if math.isfinite(measured_ab) else extrapolated["requests"],
        "interleaving": requests_for_power(curves["interleaving"]),
    }
    res["requests_for_80_power"] = needed
    res["ab_measured_on_grid"] = math.isfinite(measured_ab)
    res["ab_extrapolation"] = extrapolated
    res["ab_over_interleaving"] = (
        needed["ab"] / needed["interleaving"]
        if math.isfinite(needed["ab"]) and math.isfinite(needed["interleaving"])
        else None
    )
    res["power_true_lift"] = float(ab["true_lift"].mean())
    il = powr[powr["design"] == "interleaving"]
    res["interleaving_true_share"] = float(il["true_share"].astype(float).mean())
    return res


if __name__ == "__main__":
    app()
