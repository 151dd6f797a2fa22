"""Reads of the merchant growth marts (parquet under $SHOPRANK_HOME/merchant_growth) and of the shared marts.

Parquet, not the DuckDB warehouse: a reader never takes the warehouse's lock, so diagnostics keep working
while dbt rebuilds (they see the previous export until the new one is swapped in).

Two funnel sources: `events` (the dbt marts built from the event-level impressions, clicks and orders) and
`panel` (the merchant-analytics warehouse's product x surface x day counts of a larger marketplace, drawn by
`simulator.merchant_panel` into $SHOPRANK_HOME/merchant_panels; docs/simulator.md). `auto` reads the panel when
it is there. Lever evidence (prices, discounts, rating, live days) always comes from the marts: the panel is
drawn from the same daily panels, so both describe the same merchants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd

from merchant_growth.errors import InvalidPeriodError, NotReadyError, UnknownMerchantError
from merchant_growth.schemas import Period
from platform_common.settings import Settings

MERCHANT_FUNNEL = "mg_merchant_funnel_daily"
PRODUCT_FUNNEL = "mg_product_funnel_daily"
FORECAST_FEATURES = "mg_merchant_forecast_features"
CAMPAIGN_PLAN = "mg_campaign_plan"
PANEL_FILE = Path("merchant_panels") / "product_funnel_daily.parquet"
FunnelSource = Literal["auto", "panel", "events"]


def mg_dir(settings: Settings) -> Path:
    return settings.home_dir / "merchant_growth"


def mart_path(settings: Settings, name: str) -> Path:
    """A merchant growth mart, or a shared one (merchant_features, impression_labels, ...)."""
    base = mg_dir(settings) if name.startswith("mg_") else settings.marts_dir
    path = base / f"{name}.parquet"
    if not path.exists():
        raise NotReadyError(f"{path} is missing: run `make features` (dbt build) first")
    return path


def panel_path(settings: Settings) -> Path:
    return settings.home_dir / PANEL_FILE


def resolve_source(settings: Settings, source: FunnelSource = "auto") -> Literal["panel", "events"]:
    if source == "panel" and not panel_path(settings).exists():
        raise NotReadyError(f"{panel_path(settings)} is missing: run `make data` (the simulator draws it)")
    if source == "auto":
        return "panel" if panel_path(settings).exists() else "events"
    return source


def product_funnel_relation(settings: Settings, source: FunnelSource = "auto") -> str:
    """SQL relation of product x day x surface funnel rows with merchant_id and main_category_l1."""
    if resolve_source(settings, source) == "panel":
        return f"read_parquet('{panel_path(settings)}')"
    path = mart_path(settings, PRODUCT_FUNNEL)
    merchants = mart_path(settings, MERCHANT_FUNNEL)
    return (
        f"(select p.*, c.main_category_l1 from read_parquet('{path}') p join (select distinct merchant_id, "
        f"main_category_l1 from read_parquet('{merchants}')) c using (merchant_id))"
    )


def merchant_funnel_relation(settings: Settings, source: FunnelSource = "auto") -> str:
    """SQL relation of merchant x day x surface funnel rows (dense for the events mart, sparse for the panel)."""
    if resolve_source(settings, source) == "events":
        return f"read_parquet('{mart_path(settings, MERCHANT_FUNNEL)}')"
    return (
        "(select merchant_id, main_category_l1, activity_date, surface, sum(impressions)::bigint impressions, "
        "sum(clicks)::bigint clicks, sum(orders)::bigint orders, sum(gmv) gmv "
        f"from read_parquet('{panel_path(settings)}') group by all)"
    )


def query(sql: str, params: list | None = None) -> pd.DataFrame:
    """Run SQL on an in-memory DuckDB; `*_date` columns come back as `datetime.date` (DuckDB gives datetime64)."""
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        frame = con.execute(sql, params or []).df()
    for column in frame.columns:
        if column.endswith("_date") and pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].dt.date
    return frame


@dataclass(frozen=True)
class MerchantInfo:
    merchant_id: str
    main_category_l1: str
    tier: str | None
    first_date: date
    last_date: date


def data_bounds(settings: Settings, source: FunnelSource = "auto") -> tuple[date, date]:
    relation = merchant_funnel_relation(settings, source)
    row = query(f"select min(activity_date) lo, max(activity_date) hi from {relation}").iloc[0]
    if pd.isna(row["lo"]):
        raise NotReadyError(f"{relation} is empty")
    return pd.Timestamp(row["lo"]).date(), pd.Timestamp(row["hi"]).date()


def merchant_info(settings: Settings, merchant_id: str, source: FunnelSource = "auto") -> MerchantInfo:
    funnel = merchant_funnel_relation(settings, source)
    rows = query(
        f"select main_category_l1, min(activity_date) lo, max(activity_date) hi from {funnel} "
        "where merchant_id = ? group by 1",
        [merchant_id],
    )
    if rows.empty:
        raise UnknownMerchantError(merchant_id)
    tier = None
    try:
        tiers = query(
            f"select merchant_tier from read_parquet('{mart_path(settings, 'merchant_features')}') "
            "where merchant_id = ? order by feature_date desc limit 1",
            [merchant_id],
        )
        tier = None if tiers.empty else str(tiers.iloc[0, 0])
    except NotReadyError:
        pass
    row = rows.iloc[0]
    return MerchantInfo(
        merchant_id, str(row["main_category_l1"]), tier, pd.Timestamp(row["lo"]).date(), pd.Timestamp(row["hi"]).date()
    )


def check_period(period: Period, name: str, bounds: tuple[date, date]) -> None:
    lo, hi = bounds
    if period.start < lo or period.end > hi:
        raise InvalidPeriodError(f"{name} ({period}) is outside the data ({lo}..{hi})")


def category_merchants(settings: Settings, category: str, source: FunnelSource = "auto") -> list[str]:
    funnel = merchant_funnel_relation(settings, source)
    frame = query(f"select distinct merchant_id from {funnel} where main_category_l1 = ? order by 1", [category])
    return frame["merchant_id"].tolist()


def merchant_funnel(
    settings: Settings, merchant_ids: list[str], start: date, end: date, source: FunnelSource = "auto"
) -> pd.DataFrame:
    """Daily funnel rows (merchant x day x surface) of the given merchants in [start, end]."""
    return query(
        f"select * from {merchant_funnel_relation(settings, source)} where activity_date between ? and ? "
        "and list_contains(?, merchant_id) order by merchant_id, activity_date, surface",
        [start, end, merchant_ids],
    )


def product_funnel_rows(
    settings: Settings, merchant_id: str, start: date, end: date, source: FunnelSource = "auto"
) -> pd.DataFrame:
    """The merchant's product x day x surface funnel rows in [start, end]: the finest grain, which the
    decomposition sums exactly into products, surfaces and the merchant total."""
    relation = product_funnel_relation(settings, source)
    return query(
        f"select product_id, activity_date, surface, impressions, clicks, orders, gmv from {relation} "
        "where merchant_id = ? and activity_date between ? and ? order by product_id, activity_date, surface",
        [merchant_id, start, end],
    )


def merchant_levers(settings: Settings, merchant_ids: list[str], start: date, end: date) -> pd.DataFrame:
    """Per merchant and day: list price index, discount, rating and live status (the levers the rules read)."""
    features = mart_path(settings, FORECAST_FEATURES)
    merchant = mart_path(settings, "merchant_features")
    return query(
        f"""
        select f.merchant_id, f.feature_date, f.mg_list_price_index as list_price_index,
               f.mg_discount_avg as discount_avg, m.merchant_rating as rating,
               cast(m.merchant_is_live as double) as is_live
        from read_parquet('{features}') f
        left join read_parquet('{merchant}') m
          on f.merchant_id = m.merchant_id and f.feature_date = m.feature_date
        where f.feature_date between ? and ? and list_contains(?, f.merchant_id)
        order by 1, 2
        """,
        [start, end, merchant_ids],
    )


def campaign_days(settings: Settings, period: Period) -> int:
    path = mart_path(settings, CAMPAIGN_PLAN)
    frame = query(
        f"select coalesce(sum(is_campaign_day), 0) n from read_parquet('{path}') where plan_date between ? and ?",
        [period.start, period.end],
    )
    return int(frame.iloc[0, 0])


def merchant_daily_gmv(settings: Settings, merchant_id: str, source: FunnelSource = "auto") -> pd.DataFrame:
    """Daily funnel of the merchant over all surfaces (for the report's history plot)."""
    return query(
        f"select activity_date, sum(impressions)::bigint impressions, sum(clicks)::bigint clicks, "
        f"sum(orders)::bigint orders, sum(gmv) gmv from {merchant_funnel_relation(settings, source)} "
        "where merchant_id = ? "
        "group by 1 order by 1",
        [merchant_id],
    )


def market_daily(
    settings: Settings, exclude_merchant: str, start: date, end: date, source: FunnelSource = "auto"
) -> pd.DataFrame:
    """Per day and surface, the funnel of every other merchant (the market the merchant is compared with)."""
    return query(
        f"select activity_date, surface, sum(impressions)::bigint impressions, sum(clicks)::bigint clicks, "
        f"sum(orders)::bigint orders, sum(gmv) gmv from {merchant_funnel_relation(settings, source)} "
        "where merchant_id != ? and activity_date between ? and ? group by 1, 2 order by 1, 2",
        [exclude_merchant, start, end],
    )
