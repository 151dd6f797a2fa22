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
from datetime import timedelta

import numpy as np
import pandas as pd

from merchant_growth.data import FunnelSource
from merchant_growth.errors import UnknownMerchantError
from merchant_growth.plan_schemas import (
    Estimate,
    LeverEffect,
    Levers,
    PlanRequest,
    PlanResponse,
    ResolvedLevers,
    ScenarioFunnel,
    ScenarioResult,
)
from merchant_growth.planner_model import (
    COVARIATES,
    MAX_DAYS_AHEAD,
    N_DRAWS,
    NEW_MERCHANT_DAYS,
    PARTS,
    PSEUDO,
    SURFACES,
    InvalidScenarioError,
    PartData,
    PlannerModel,
    campaign_date,
    day_kind,
    fit_planner,
    part_rows,
    planner_model,
    poisson_fe,
)
from platform_common.settings import Settings

__all__ = ["InvalidScenarioError", "PlannerModel", "campaign_date", "day_kind", "fit_planner", "plan", "poisson_fe"]

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
    parts = {p: part_rows(local, p) for p in PARTS}
    parts["traffic_with_ramp"] = part_rows(local, "traffic", include_ramp=True)
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
