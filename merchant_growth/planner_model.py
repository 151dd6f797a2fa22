"""The campaign planner's model: the calendar, the fixed-effect Poisson fits of every funnel part, the fitted state.

What it models and why is in `merchant_growth.planner`'s docstring; this module is the fitting half (history in,
`PlannerModel` out), the planner module the scenario half (a `PlannerModel` and levers in, forecasts out).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np
import pandas as pd

from merchant_growth.data import FunnelSource, mart_path, product_funnel_relation, query, resolve_source
from merchant_growth.errors import MerchantGrowthError
from merchant_growth.plan_schemas import MEGA_MONTHS
from platform_common.settings import Settings

SURFACES = ("home_feed", "short_video", "live_stream", "search")
COVARIATES = ("discount", "log_price", "live_on_live_stream", "live_elsewhere", "campaign", "mega", "weekend", "rating")
# Exposure is the platform's allocation: the day's sessions and the live room's slots move it; the shopper's
# response to price, discount and rating is in CTR, CVR and order value. (With price in the traffic model, a
# spurious -0.4 elasticity came out of list-price drift at tiny.)
# CTR and CVR take their price response from the cross-section of products (`price_response`)
CROSS_SECTION_PRICE = ("ctr", "cvr")
TRAFFIC_COVARIATES = ("live_on_live_stream", "live_elsewhere", "campaign", "mega", "weekend")
PARTS: tuple[str, ...] = ("traffic", "ctr", "cvr", "aov")
MAX_DAYS_AHEAD = 92
NEW_MERCHANT_DAYS = 30  # as serving/schemas.py
RAMP_DAYS = 7  # a product's first week of exposure is its ramp-up, not its level: left out of the traffic fit
N_DRAWS = 500
PSEUDO = 1.0  # prior exposure (in the part's offset units) at the market rate, so an empty cell is not zero


class InvalidScenarioError(MerchantGrowthError, ValueError):
    """Levers or a campaign that are well-formed but do not apply to this merchant or data: HTTP 400."""

    http_status = 400


# --- the calendar (public: the published campaign plan) -----------------------------------------------------


def campaign_date(campaign: str, after: date) -> date:
    """The first day of `campaign` (`M.M` or `payday`) strictly after `after`."""
    day = after + timedelta(days=1)
    for _ in range(400):
        if campaign == "payday" and day.day == 25:
            return day
        if campaign != "payday" and f"{day.month}.{day.day}" == campaign and day.month == day.day:
            return day
        day += timedelta(days=1)
    raise InvalidScenarioError(f"campaign {campaign!r} has no date within a year")  # unreachable for valid names


def day_kind(day: date) -> Literal["normal", "campaign", "mega"]:
    if day.month == day.day:
        return "mega" if day.month in MEGA_MONTHS else "campaign"
    return "campaign" if day.day == 25 else "normal"


# --- Poisson regression with one fixed effect per group ---------------------------------------------------


@dataclass(frozen=True)
class PoissonFit:
    beta: np.ndarray  # (k,), 0 for a covariate not identified
    cov: np.ndarray  # (k, k), clustered by day
    identified: np.ndarray  # (k,) bool


def poisson_fe(
    y: np.ndarray, log_offset: np.ndarray, x: np.ndarray, group: np.ndarray, cluster: np.ndarray, iters: int = 50
) -> PoissonFit:
    """E[y] = exp(log_offset + alpha_group + x beta), alpha concentrated out: for a given beta the likelihood's
    alpha is closed-form, log(sum y / sum exp(offset + x beta)) per group, and Newton's step on beta uses the
    profile Hessian (x demeaned within group, weighted by mu). Groups without any y > 0 carry no information on
    beta and are dropped. A covariate with no variation within groups is not identified: left at 0."""
    n_groups = int(group.max()) + 1 if len(group) else 0
    sy = np.bincount(group, weights=y, minlength=n_groups)
    keep = sy[group] > 0
    y, log_offset, x, group, cluster = y[keep], log_offset[keep], x[keep], group[keep], cluster[keep]
    k = x.shape[1]
    counts = np.bincount(group, minlength=n_groups).astype(float)
    xsum = np.stack([np.bincount(group, weights=x[:, j], minlength=n_groups) for j in range(k)], 1)
    xbar = xsum / np.maximum(counts, 1.0)[:, None]
    identified = np.abs(x - xbar[group]).max(axis=0, initial=0.0) > 1e-9
    xi = x[:, identified]
    beta = np.zeros(xi.shape[1])
    sy = np.bincount(group, weights=y, minlength=n_groups)
    hessian = np.eye(xi.shape[1])
    xd = xi
    mu = y
    for _ in range(iters):
        e = np.exp(log_offset + xi @ beta)
        se = np.bincount(group, weights=e, minlength=n_groups)
        alpha = np.log(np.where(sy > 0, sy, 1.0) / np.where(se > 0, se, 1.0))
        mu = e * np.exp(alpha[group])
        smu = np.bincount(group, weights=mu, minlength=n_groups)
        mbar = np.stack([np.bincount(group, weights=mu * xi[:, j], minlength=n_groups) for j in range(xi.shape[1])], 1)
        xd = xi - (mbar / np.maximum(smu, 1e-300)[:, None])[group]
        grad = xd.T @ (y - mu)
        hessian = (xd * mu[:, None]).T @ xd
        step = np.linalg.lstsq(hessian, grad, rcond=None)[0]
        beta = beta + step
        if np.abs(step).max(initial=0.0) < 1e-9:
            break
    scores = xd * (y - mu)[:, None]
    _, cluster_idx = np.unique(cluster, return_inverse=True)
    per_cluster = (
        np.stack([np.bincount(cluster_idx, weights=scores[:, j]) for j in range(scores.shape[1])], 1)
        if scores.shape[1]
        else np.zeros((0, 0))
    )
    bread = np.linalg.pinv(hessian)
    cov_i = bread @ (per_cluster.T @ per_cluster) @ bread
    full_beta = np.zeros(k)
    full_beta[identified] = beta
    cov = np.zeros((k, k))
    cov[np.ix_(identified, identified)] = cov_i
    return PoissonFit(full_beta, cov, identified)


# --- data ---------------------------------------------------------------------------------------------------


def load_history(settings: Settings, source: FunnelSource = "auto") -> pd.DataFrame:
    """Product x surface x day funnel with the day's observed levers (shown price, discount, live, rating)."""
    relation = product_funnel_relation(settings, source)
    products = mart_path(settings, "product_features")
    merchants = mart_path(settings, "merchant_features")
    frame = query(
        f"""
        select p.product_id, p.merchant_id, p.category_l1, p.activity_date, p.surface, p.impressions, p.clicks,
               p.orders, p.gmv,
               f.price, f.discount_pct, m.merchant_is_live, m.merchant_rating, m.merchant_age_days
        from {relation} p
        left join read_parquet('{products}') f on f.product_id = p.product_id and f.feature_date = p.activity_date
        left join read_parquet('{merchants}') m
          on m.merchant_id = p.merchant_id and m.feature_date = p.activity_date
        order by p.merchant_id, p.product_id, p.surface, p.activity_date
        """
    )
    frame["discount_pct"] = frame["discount_pct"].fillna(0.0).clip(0.0, 0.95)
    list_price = frame["price"] / (1.0 - frame["discount_pct"])
    frame["log_list"] = np.log(list_price.where(list_price > 0))
    frame["log_list_price"] = frame["log_list"] - frame.groupby("product_id")["log_list"].transform("median")
    frame["log_list_price"] = frame["log_list_price"].fillna(0.0)
    # the shown price relative to the product's usual list price: a discount moves it as a price change does
    frame["log_price"] = frame["log_list_price"] + np.log1p(-frame["discount_pct"])
    frame["merchant_rating"] = frame.groupby("merchant_id")["merchant_rating"].transform(lambda s: s.ffill().bfill())
    frame["merchant_rating"] = frame["merchant_rating"].fillna(frame["merchant_rating"].mean())
    live = frame["merchant_is_live"].fillna(False).astype(bool).to_numpy()
    on_ls = (frame["surface"] == "live_stream").to_numpy()
    frame["live_on_live_stream"] = (live & on_ls).astype(float)
    frame["live_elsewhere"] = (live & ~on_ls).astype(float)
    dates = pd.to_datetime(frame["activity_date"])
    kinds = [day_kind(d) for d in frame["activity_date"]]
    frame["campaign"] = np.array([k == "campaign" for k in kinds], dtype=float)
    frame["mega"] = np.array([k == "mega" for k in kinds], dtype=float)
    frame["weekend"] = (dates.dt.weekday >= 5).astype(float).to_numpy()
    frame["rating"] = frame["merchant_rating"].astype(float)
    frame["discount"] = frame["discount_pct"]
    frame["cell"] = (frame["product_id"] + "|" + frame["surface"]).astype("category").cat.codes.to_numpy()
    # products listed during the history (first seen after its first day) are in their ramp-up for a week
    first = pd.to_datetime(frame.groupby("product_id")["activity_date"].transform("min"))
    frame["ramp"] = ((dates - first).dt.days < RAMP_DAYS).to_numpy() & (first > dates.min()).to_numpy()
    frame["day"] = (dates - dates.min()).dt.days.to_numpy()
    return frame


# --- the fitted model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartData:
    """One part's regression rows: count, log offset, covariates, cell, day."""

    y: np.ndarray
    log_offset: np.ndarray
    x: np.ndarray
    cell: np.ndarray
    day: np.ndarray


@dataclass(frozen=True)
class PlannerModel:
    fits: dict[str, PoissonFit]
    market_rate: dict[str, float]  # each part's market-wide rate (for the empty-cell prior)
    history: pd.DataFrame
    source: Literal["panel", "events"]
    mega_observed: bool
    campaign_observed: bool

    @property
    def data_end(self) -> date:
        return max(self.history["activity_date"])


def part_rows(frame: pd.DataFrame, part: str, include_ramp: bool = False) -> PartData:
    x = frame[list(COVARIATES)].to_numpy(float)
    if part == "traffic":
        x[:, [c not in TRAFFIC_COVARIATES for c in COVARIATES]] = 0.0  # not in the model: left out, never identified
    counts = {
        "traffic": (frame["impressions"], None),
        "ctr": (frame["clicks"], frame["impressions"]),
        "cvr": (frame["orders"], frame["clicks"]),
        "aov": (frame["gmv"], frame["orders"]),
    }[part]
    y = counts[0].to_numpy(float)
    if counts[1] is None:
        mask = np.ones(len(frame), bool) if include_ramp else ~frame["ramp"].to_numpy()
        log_offset = np.zeros(len(frame))
    else:
        base = counts[1].to_numpy(float)
        mask = base > 0
        log_offset = np.log(np.where(mask, base, 1.0))
    cell, day = frame["cell"].to_numpy(), frame["day"].to_numpy()
    return PartData(y[mask], log_offset[mask], x[mask], cell[mask], day[mask])


def price_response(history: pd.DataFrame, part: str) -> tuple[float, float]:
    """Elasticity of CTR or CVR to the shown price, from the cross-section: each product x surface cell's rate over
    the whole history against its median log shown price relative to its category's median, with a fixed effect
    per merchant and surface (the same shop, the same surface: its dearer products against its cheaper ones) and
    the product's mean discount as a control; standard error clustered by merchant.

    Why not within a product: there a product's shown price moves almost only with its discount (list prices drift
    a few percent), and log(1 - d) is nearly linear in d over the discounts seen, so the within fit cannot tell a
    price effect from a discount effect; at small it split them about 1:2 against the truth's 1:1 and predicted
    that a price increase raises GMV."""
    y_col, base_col = {"ctr": ("clicks", "impressions"), "cvr": ("orders", "clicks")}[part]
    frame = history.assign(log_shown=np.log(history["price"].where(history["price"] > 0)))
    cells = frame.groupby(["product_id", "surface"], observed=True).agg(
        merchant_id=("merchant_id", "first"),
        category=("category_l1", "first"),
        y=(y_col, "sum"),
        base=(base_col, "sum"),
        log_price=("log_shown", "median"),
        discount=("discount_pct", "mean"),
    )
    cells = cells[(cells["base"] > 0) & cells["log_price"].notna()].reset_index()
    cells["rel_price"] = cells["log_price"] - cells.groupby("category")["log_price"].transform("median")
    group = (cells["merchant_id"] + "|" + cells["surface"]).astype("category").cat.codes.to_numpy()
    cluster = cells["merchant_id"].astype("category").cat.codes.to_numpy()
    x = cells[["rel_price", "discount"]].to_numpy(float)
    fit = poisson_fe(cells["y"].to_numpy(float), np.log(cells["base"].to_numpy(float)), x, group, cluster)
    return float(fit.beta[0]), float(np.sqrt(fit.cov[0, 0]))


def fit_planner(settings: Settings, source: FunnelSource = "auto") -> PlannerModel:
    history = load_history(settings, source)
    fits, rates = {}, {}
    k = COVARIATES.index("log_price")
    for part in PARTS:
        rows = part_rows(history, part)
        if part in CROSS_SECTION_PRICE:
            # the price response from the cross-section, fixed as an offset in the within-product fit
            gamma, gamma_se = price_response(history, part)
            x = rows.x.copy()
            x[:, k] = 0.0
            fit = poisson_fe(rows.y, rows.log_offset + gamma * rows.x[:, k], x, rows.cell, rows.day)
            beta, cov = fit.beta.copy(), fit.cov.copy()
            beta[k], cov[k, :], cov[:, k], cov[k, k] = gamma, 0.0, 0.0, gamma_se**2
            identified = fit.identified.copy()
            identified[k] = True
            fits[part] = PoissonFit(beta, cov, identified)
        else:
            fits[part] = poisson_fe(rows.y, rows.log_offset, rows.x, rows.cell, rows.day)
        rates[part] = float(rows.y.sum() / max(np.exp(rows.log_offset).sum(), 1e-300))
    return PlannerModel(
        fits,
        rates,
        history,
        resolve_source(settings, source),
        bool(history["mega"].any()),
        bool(history["campaign"].any()),
    )


def _state_key(settings: Settings, source: FunnelSource) -> str:
    """Changes whenever the data the model reads is rewritten (a new `make data` or `make features`)."""
    from merchant_growth.data import panel_path

    paths = [mart_path(settings, "product_features"), mart_path(settings, "merchant_features")]
    if resolve_source(settings, source) == "panel":
        paths.append(panel_path(settings))
    else:
        paths.append(mart_path(settings, "mg_product_funnel_daily"))
    stamp = "|".join(f"{p}:{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in paths)
    return hashlib.sha256(stamp.encode()).hexdigest()


_FITS: dict[tuple[str, str], tuple[str, PlannerModel]] = {}


def planner_model(settings: Settings, source: FunnelSource = "auto") -> PlannerModel:
    """The fitted planner of this state, refitted when its data changes (the service keeps one per process)."""
    slot, key = (str(settings.home_dir), source), _state_key(settings, source)
    cached = _FITS.get(slot)
    if cached is None or cached[0] != key:
        _FITS[slot] = (key, fit_planner(settings, source))
    return _FITS[slot][1]
