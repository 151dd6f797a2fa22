"""Parquet marts exported by the dbt project (transforms/).

Feast does not resolve FileSource paths against the repo folder, so paths are absolute, built from the same
settings every other stage uses: `feast` works from this folder and from Python anywhere.
"""

from feast import FileSource

from platform_common.settings import get_settings

MARTS_DIR = get_settings().marts_dir


def _mart(name: str, description: str, field_mapping: dict[str, str] | None = None) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=str(MARTS_DIR / f"{name}.parquet"),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        field_mapping=field_mapping,
        description=description,
        owner="ranking-platform@shoprank.dev",
        tags={"producer": "dbt", "mart": name},
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
