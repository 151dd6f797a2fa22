"""Parquet marts exported by the dbt project (transforms/).

Feast does not resolve FileSource paths against the repo folder, so paths are absolute, built from the same
settings every other stage uses: `feast` works from this folder and from Python anywhere.

Under SHOPRANK_OFFLINE_ENGINE=spark the same files are `SparkSource`s (Feast's Spark offline store takes no
other source): `path=` the exported parquet, which Spark reads itself (SparkSource.get_table_query_string loads
the path into a temporary view), so both engines join the very same bytes.
"""

from pathlib import Path
from typing import Any

from feast import FileSource

from platform_common.settings import get_settings

SETTINGS = get_settings()
MARTS_DIR = SETTINGS.marts_dir


def parquet_source(
    name: str,
    path: Path | str,
    description: str,
    owner: str,
    tags: dict[str, str],
    field_mapping: dict[str, str] | None = None,
) -> Any:
    """A dbt mart's parquet file as the offline engine's source type: FileSource (DuckDB) or SparkSource (Spark)."""
    common: dict[str, Any] = {
        "name": name,
        "path": str(path),
        "timestamp_field": "event_timestamp",
        "created_timestamp_column": "created_timestamp",
        "field_mapping": field_mapping,
        "description": description,
        "owner": owner,
        "tags": tags,
    }
    if SETTINGS.offline_engine == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

        return SparkSource(file_format="parquet", **common)
    return FileSource(**common)


def _mart(name: str, description: str, field_mapping: dict[str, str] | None = None) -> Any:
    return parquet_source(
        f"{name}_source",
        MARTS_DIR / f"{name}.parquet",
        description,
        "ranking-platform@shoprank.dev",
        {"producer": "dbt", "mart": name},
        field_mapping,
    )


user_features_source = _mart("user_features", "Daily rolling behaviour of each user (dbt mart user_features).")
user_category_features_source = _mart(
    "user_category_features", "Daily 30-day engagement of each user with each L1 category."
)
# The product row names its merchant and category; renamed so they cannot collide with the merchant and
# category join keys of the other views in one training frame.
product_features_source = _mart(
    "product_features",
    "Daily price and rolling funnel rates of each product.",
    field_mapping={"merchant_id": "product_merchant_id", "category_l1": "product_category_l1"},
)
merchant_features_source = _mart("merchant_features", "Daily rating, tier and rolling GMV of each merchant.")
# Issue 18, section 4: the published campaign plan of each product's day, true from the instant it was known.
product_campaign_plan_source = _mart(
    "product_campaign_plan",
    "Each product's planned price and discount on a day and the day's campaign kind, from the instant known.",
)
