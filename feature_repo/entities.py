"""The things features describe. Join keys are the marketplace's string ids."""

from feast import Entity, ValueType

OWNER = "ranking-platform@shoprank.dev"

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A shopper browsing the marketplace (id like u0000123).",
    owner=OWNER,
    tags={"domain": "shopper"},
)

product = Entity(
    name="product",
    join_keys=["product_id"],
    value_type=ValueType.STRING,
    description="A listed product (id like p000456).",
    owner=OWNER,
    tags={"domain": "catalog"},
)

merchant = Entity(
    name="merchant",
    join_keys=["merchant_id"],
    value_type=ValueType.STRING,
    description="A seller on the marketplace (id like m00078).",
    owner=OWNER,
    tags={"domain": "merchant"},
)

category = Entity(
    name="category",
    join_keys=["category_l1"],
    value_type=ValueType.STRING,
    description="A top-level product category; keyed with a user for taste features.",
    owner=OWNER,
    tags={"domain": "catalog"},
)
