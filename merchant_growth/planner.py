"""Campaign what-if planner: a merchant's GMV on an upcoming campaign day under levers, with an interval.

The model learns every lever's effect from the marketplace's history, never from the simulator's parameters (that
is the oracle, `simulator.campaign_oracle`, which only the benchmark and the tests read):

* **Data.** The product x surface x day funnel (the merchant panels when present, else the event marts), joined
  with what was observed on each day: the product's shown price and discount (`product_features`) and the
  merchant's rating and live flag (`merchant_features`).
* **Model.** GMV = impressions x CTR x CVR x order value, each part a Poisson (pseudo-)likelihood regression with
  a fixed effect per product and surface and the covariates: discount depth, log shown price relative to the
  product's median list price, live on the live_stream surface, live elsewhere, campaign day, mega-sale day,
  weekend and rating (traffic: only live, campaign, mega and weekend, `TRAFFIC_COVARIATES`). Traffic counts
  impressions, CTR clicks per impression, CVR orders per click, order value GMV per order
  (each the log of the part is linear in the covariates; Poisson because it stays consistent for counts with
  many zeros and for a positive amount, which a regression of logs does not). The fixed effects are concentrated
  out exactly (`poisson_fe`), so the coefficients come from changes within a product: a product's own discount
  days against its full-price days, a merchant's own live days against the others, campaign days against the
  days around them, pooled over every merchant. CTR's and CVR's response to the shown price is the exception:
  it comes from the cross-section of products (`price_response`): within a product the price moves almost only
  with the discount.
* **Forecast.** Each of the merchant's product-surface cells at the scenario's covariates on the campaign date,
  summed. Two platform levers are not in the history and enter by their definition: a traffic share t multiplies
  impressions by t; a new-merchant boost b multiplies a new merchant's ranking score by 1 + b, which the planner
  takes as 1 + b times its impressions (an upper bound: it assumes every slot is ranked).
* **Intervals.** 95%, from 500 draws of every part's coefficients from their sampling distribution (a sandwich
  covariance clustered by day: a day's shock moves all cells together) with the fixed effects re-solved for each
  draw, times a draw of the merchant's level (the spread of its daily GMV around the fit, over the square root of
  its days). They cover the estimation error, not a model that is wrong (extrapolating a discount far beyond
  those seen, a mega-sale effect never observed): the benchmark measures that against the oracle.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np
import pandas as pd

from merchant_growth.data import FunnelSource, mart_path, product_funnel_relation, query, resolve_source
from merchant_growth.errors import MerchantGrowthError, UnknownMerchantError
from merchant_growth.plan_schemas import (
    MEGA_MONTHS,
    Estimate,
    LeverEffect,
    Levers,
    PlanRequest,
    PlanResponse,
    ResolvedLevers,
    ScenarioFunnel,
    ScenarioResult,
)
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


def _part_rows(frame: pd.DataFrame, part: str, include_ramp: bool = False) -> PartData:
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
        rows = _part_rows(history, part)
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


# --- scenarios ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MerchantCells:
    """The merchant's product-surface cells as of the last day of data, and its history for the level."""

    cells: np.ndarray  # cell codes
    surface: np.ndarray  # surface name per cell
    log_list_price: np.ndarray  # last observed, per cell
    rating: float
    age_days_at_end: float | None
    recent_discount: float
    rows: pd.DataFrame  # the merchant's history rows
    parts: dict[str, PartData]  # each part's regression rows of the merchant, `cell` = position in `cells`


def merchant_cells(model: PlannerModel, merchant_id: str) -> MerchantCells:
    h = model.history
    rows = h[h["merchant_id"] == merchant_id]
    if rows.empty:
        raise UnknownMerchantError(merchant_id)
    last = rows.sort_values("activity_date").groupby("cell").tail(1)
    end = model.data_end
    recent = rows[pd.to_datetime(rows["activity_date"]) > pd.Timestamp(end - timedelta(days=7))]
    per_product = recent.groupby(["product_id", "activity_date"])["discount_pct"].first()
    age = rows.sort_values("activity_date")["merchant_age_days"].dropna()
    last_day = rows[rows["activity_date"] == rows["activity_date"].max()]
    cells = last["cell"].to_numpy()
    local = rows.assign(cell=pd.Index(cells).get_indexer(rows["cell"]))
    parts = {p: _part_rows(local, p) for p in PARTS}
    parts["traffic_with_ramp"] = _part_rows(local, "traffic", include_ramp=True)
    return MerchantCells(
        cells=cells,
        surface=last["surface"].to_numpy(),
        log_list_price=last["log_list_price"].to_numpy(float),
        rating=float(last_day["rating"].iloc[0]),
        age_days_at_end=float(age.iloc[-1]) + (end - max(rows["activity_date"])).days if len(age) else None,
        recent_discount=float(per_product.mean()) if len(per_product) else 0.0,
        rows=rows,
        parts=parts,
    )


def _alphas(model: PlannerModel, mc: MerchantCells, part: str, beta: np.ndarray) -> np.ndarray:
    """Each merchant cell's fixed effect given beta (closed-form), with a small prior at the market rate."""
    sy, se = _cell_sums(mc.parts[part], beta, len(mc.cells))
    if part == "traffic":
        # a product still in its first week has only ramp-up days: its level is taken from them (an underestimate)
        sy_all, se_all = _cell_sums(mc.parts["traffic_with_ramp"], beta, len(mc.cells))
        ramp_only = se == 0
        sy, se = np.where(ramp_only, sy_all, sy), np.where(ramp_only, se_all, se)
        return np.log(np.maximum(sy, 1e-12) / np.maximum(se, 1e-12))
    # the prior is the merchant's own rate over all its cells (itself shrunk to the market's): a quiet cell of a
    # weak merchant is not given the market's conversion
    market = model.market_rate[part]
    rate = (sy.sum() + PSEUDO * market) / (se.sum() + PSEUDO)
    return np.log((sy + PSEUDO * rate) / (se + PSEUDO))


def _cell_sums(rows: PartData, beta: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Per merchant cell: sum of y and of exp(offset + x beta) (`rows.cell` holds positions in `mc.cells`)."""
    e = np.exp(rows.log_offset + rows.x @ beta)
    return np.bincount(rows.cell, weights=rows.y, minlength=n_cells), np.bincount(
        rows.cell, weights=e, minlength=n_cells
    )


def _design(mc: MerchantCells, levers: ResolvedLevers, kind: str, weekend: bool) -> np.ndarray:
    on_ls = mc.surface == "live_stream"
    n = len(mc.cells)
    cols = {
        "discount": np.full(n, levers.discount),
        "log_price": mc.log_list_price + np.log1p(levers.price_change) + np.log1p(-levers.discount),
        "live_on_live_stream": (on_ls & levers.live).astype(float),
        "live_elsewhere": (~on_ls & levers.live).astype(float),
        "campaign": np.full(n, float(kind == "campaign")),
        "mega": np.full(n, float(kind == "mega")),
        "weekend": np.full(n, float(weekend)),
        "rating": np.full(n, mc.rating),
    }
    return np.stack([cols[c] for c in COVARIATES], 1)


def _effective_beta(model: PlannerModel, beta: np.ndarray) -> np.ndarray:
    """A mega sale never seen in the history borrows the other campaign days' effect (its lower bound)."""
    if model.mega_observed:
        return beta
    out = beta.copy()
    out[COVARIATES.index("mega")] = beta[COVARIATES.index("campaign")]
    out[COVARIATES.index("campaign")] = beta[COVARIATES.index("campaign")]
    return out


@dataclass(frozen=True)
class CellForecast:
    impressions: np.ndarray
    clicks: np.ndarray
    orders: np.ndarray
    gmv: np.ndarray


def _forecast_cells(
    model: PlannerModel,
    mc: MerchantCells,
    betas: dict[str, np.ndarray],
    alphas: dict[str, np.ndarray],
    levers: ResolvedLevers,
    kind: str,
    weekend: bool,
    new_merchant: bool,
) -> CellForecast:
    x = _design(mc, levers, kind, weekend)
    parts = {p: np.exp(alphas[p] + x @ _effective_beta(model, betas[p])) for p in PARTS}
    boost = 1.0 + (levers.new_merchant_boost if new_merchant else 0.0)
    impressions = parts["traffic"] * levers.traffic_share * boost
    clicks = impressions * np.minimum(parts["ctr"], 1.0)
    orders = clicks * np.minimum(parts["cvr"], 1.0)
    return CellForecast(impressions, clicks, orders, orders * parts["aov"])


def _level_sd(
    model: PlannerModel, mc: MerchantCells, betas: dict[str, np.ndarray], alphas: dict[str, np.ndarray]
) -> float:
    """Standard error of the merchant's log level: the spread of its daily GMV around the fit / sqrt(days)."""
    rows = mc.rows
    index = {c: i for i, c in enumerate(mc.cells)}
    pos = np.array([index[c] for c in rows["cell"]], dtype=np.int64)
    x = rows[list(COVARIATES)].to_numpy(float)
    fitted = np.ones(len(rows))
    for p in PARTS:
        fitted *= np.exp(alphas[p][pos] + x @ _effective_beta(model, betas[p]))
    daily = pd.DataFrame({"day": rows["activity_date"].to_numpy(), "obs": rows["gmv"].to_numpy(), "fit": fitted})
    daily = daily.groupby("day").sum()
    daily = daily[(daily["obs"] > 0) & (daily["fit"] > 0)]
    if len(daily) < 3:
        return 1.0  # too little history to say: a wide level interval, stated by its width
    resid = np.log(daily["obs"] / daily["fit"])
    return float(resid.std(ddof=1) / np.sqrt(len(daily)))


def default_scenarios(base_discount: float, new_merchant: bool) -> list[Levers]:
    """Do nothing, then one lever at a time."""
    out = [
        Levers(name="do nothing"),
        Levers(name="discount +10pt", discount=min(base_discount + 0.10, 0.9)),
        Levers(name="discount +20pt", discount=min(base_discount + 0.20, 0.9)),
        Levers(name="go live", live=True),
        Levers(name="price -10%", price_change=-0.10),
        Levers(name="price +10%", price_change=0.10),
        Levers(name="traffic x1.2", traffic_share=1.2),
        Levers(name="discount +20pt, live", discount=min(base_discount + 0.20, 0.9), live=True),
    ]
    if new_merchant:
        out.append(Levers(name="new-merchant boost 0.3", new_merchant_boost=0.3))
    return out


def resolve(levers: Levers, base_discount: float) -> ResolvedLevers:
    return ResolvedLevers(
        discount=base_discount if levers.discount is None else levers.discount,
        live=bool(levers.live),
        price_change=levers.price_change,
        new_merchant_boost=levers.new_merchant_boost,
        traffic_share=levers.traffic_share,
    )


def _interval(samples: np.ndarray, point: float) -> Estimate:
    lo, hi = np.quantile(samples, [0.025, 0.975])
    return Estimate(value=float(point), low=float(min(lo, point)), high=float(max(hi, point)))


def plan(
    request: PlanRequest, settings: Settings, source: FunnelSource = "auto", model: PlannerModel | None = None
) -> PlanResponse:
    """Forecast the merchant's GMV on the campaign's next date after the data, scenario by scenario."""
    model = model if model is not None else planner_model(settings, source)
    mc = merchant_cells(model, request.merchant_id)
    end = model.data_end
    day = campaign_date(request.campaign, end)
    ahead = (day - end).days
    if ahead > MAX_DAYS_AHEAD:
        raise InvalidScenarioError(
            f"campaign {request.campaign} is next on {day}, {ahead} days after the data ends ({end}); the planner "
            f"plans campaigns at most {MAX_DAYS_AHEAD} days ahead"
        )
    kind = day_kind(day)
    weekend = day.weekday() >= 5
    new_merchant = mc.age_days_at_end is not None and mc.age_days_at_end + ahead < NEW_MERCHANT_DAYS
    scenarios = list(request.scenarios) if request.scenarios else default_scenarios(mc.recent_discount, new_merchant)
    for s in scenarios:
        if s.new_merchant_boost > 0 and not new_merchant:
            age = "unknown" if mc.age_days_at_end is None else f"{mc.age_days_at_end + ahead:.0f} days"
            raise InvalidScenarioError(
                f"scenario {s.name!r}: new_merchant_boost applies only to merchants younger than {NEW_MERCHANT_DAYS} "
                f"days on the campaign day; {request.merchant_id} will be {age} old on {day}"
            )
    do_nothing = resolve(Levers(name="do nothing"), mc.recent_discount)
    resolved = [resolve(s, mc.recent_discount) for s in scenarios]

    betas = {p: model.fits[p].beta for p in PARTS}
    alphas = {p: _alphas(model, mc, p, betas[p]) for p in PARTS}

    def run(betas: dict[str, np.ndarray], alphas: dict[str, np.ndarray]) -> tuple[float, list[CellForecast]]:
        normal = _forecast_cells(model, mc, betas, alphas, do_nothing, "normal", weekend, new_merchant).gmv.sum()
        fc = [_forecast_cells(model, mc, betas, alphas, lv, kind, weekend, new_merchant) for lv in resolved]
        return float(normal), fc

    normal, point = run(betas, alphas)
    base = float(_forecast_cells(model, mc, betas, alphas, do_nothing, kind, weekend, new_merchant).gmv.sum())

    rng = np.random.default_rng(int(hashlib.sha256(f"{request.merchant_id}|{day}".encode()).hexdigest()[:8], 16))
    level_sd = _level_sd(model, mc, betas, alphas)
    draws_gmv = np.empty((N_DRAWS, len(resolved)))
    draws_normal = np.empty(N_DRAWS)
    draws_base = np.empty(N_DRAWS)
    chols = {p: _sqrt_cov(model.fits[p].cov) for p in PARTS}
    for i in range(N_DRAWS):
        b = {p: betas[p] + chols[p] @ rng.standard_normal(len(betas[p])) for p in PARTS}
        a = {p: _alphas(model, mc, p, b[p]) for p in PARTS}
        level = float(np.exp(rng.normal(0.0, level_sd)))
        n_i, fc_i = run(b, a)
        draws_normal[i] = n_i * level
        draws_gmv[i] = [f.gmv.sum() * level for f in fc_i]
        draws_base[i] = _forecast_cells(model, mc, b, a, do_nothing, kind, weekend, new_merchant).gmv.sum() * level

    results = []
    for j, (s, lv, fc) in enumerate(zip(scenarios, resolved, point, strict=True)):
        gmv = float(fc.gmv.sum())
        imp, clk, orders = float(fc.impressions.sum()), float(fc.clicks.sum()), float(fc.orders.sum())
        results.append(
            ScenarioResult(
                name=s.name,
                levers=lv,
                gmv=_interval(draws_gmv[:, j], gmv),
                uplift_vs_do_nothing=_interval(draws_gmv[:, j] / draws_base - 1.0, gmv / base - 1.0),
                uplift_vs_normal_day=_interval(draws_gmv[:, j] / draws_normal - 1.0, gmv / normal - 1.0),
                funnel=ScenarioFunnel(
                    impressions=imp,
                    clicks=clk,
                    orders=orders,
                    ctr=clk / imp if imp else 0.0,
                    cvr=orders / clk if clk else 0.0,
                    aov=gmv / orders if orders else 0.0,
                ),
                gmv_by_surface={sf: float(fc.gmv[mc.surface == sf].sum()) for sf in SURFACES},
            )
        )
    return PlanResponse(
        merchant_id=request.merchant_id,
        campaign=request.campaign,
        campaign_date=day,
        day_kind=kind,
        data_end=end,
        days_ahead=ahead,
        new_merchant=new_merchant,
        funnel_source=model.source,
        do_nothing=do_nothing,
        normal_day_gmv=_interval(draws_normal, normal),
        scenarios=results,
        effects=_effects(model),
        notes=_notes(model, kind, resolved, mc),
    )


def _sqrt_cov(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def _effects(model: PlannerModel) -> list[LeverEffect]:
    out = []
    for p in PARTS:
        fit = model.fits[p]
        for j, c in enumerate(COVARIATES):
            ok = bool(fit.identified[j])
            out.append(
                LeverEffect(
                    part=p,
                    covariate=c,
                    coefficient=float(fit.beta[j]) if ok else None,
                    std_error=float(np.sqrt(fit.cov[j, j])) if ok else None,
                )
            )
    return out


def _notes(model: PlannerModel, kind: str, resolved: list[ResolvedLevers], mc: MerchantCells) -> list[str]:
    notes = [
        "Intervals are 95% and cover estimation error (coefficients clustered by day, the merchant's level); not a "
        "model that is wrong where the history has no example.",
        "The new-merchant boost is taken as (1 + boost) x impressions and the traffic share as share x impressions: "
        "neither lever is in the history.",
    ]
    if kind == "mega" and not model.mega_observed:
        notes.append("No mega-sale day in the history: the mega-sale effect is the other campaign days' (too small).")
    if kind != "normal" and not model.campaign_observed and not model.mega_observed:
        notes.append("No campaign day in the history: the campaign day is forecast as an ordinary day.")
    seen = model.history["discount_pct"]
    hi = float(seen.quantile(0.99))
    if any(lv.discount > hi for lv in resolved):
        notes.append(f"A discount above {hi:.2f} (the 99th percentile in the history) is an extrapolation.")
    if not mc.rows["merchant_is_live"].fillna(False).astype(bool).any() and any(lv.live for lv in resolved):
        notes.append("The merchant never streamed in the history: going live uses the market's live effect.")
    return notes
