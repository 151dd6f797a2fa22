"""Any MLflow client scores the champion with `mlflow.pyfunc.load_model(...).predict(frame)`: on the project's
frozen test rows and on a frame of Feast online features, with MLflow's signature checks on, as users call it."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import mlflow
import numpy as np
import pandas as pd
import pytest

from platform_common.feast_config import get_feature_store
from platform_common.feature_spec import CONTEXT_NUMERIC
from platform_common.registry import CHAMPION, connect
from serving.features.feast import FeastReader
from serving.ranking import context_columns
from training.bundle import RankerBundle
from training.signature import integer_features

OUTPUTS = ["pctr", "pcvr", "pctcvr", "expected_gmv"]


@pytest.fixture(scope="module")
def champion(tiny_platform):
    client = connect(tiny_platform)
    version = client.get_model_version_by_alias(tiny_platform.model_name, CHAMPION)
    model = mlflow.pyfunc.load_model(f"models:/{tiny_platform.model_name}@{CHAMPION}")
    bundle = model.unwrap_python_model()
    assert isinstance(bundle, RankerBundle) and bundle.spec is not None
    return model, bundle, version


def test_the_signature_declares_each_input_by_where_it_comes_from(champion, tiny_platform):
    model, bundle, version = champion
    rows = pd.read_parquet(version.tags["test_set_path"])
    declared = {c.name: repr(c.type) for c in model.metadata.get_input_schema().inputs}
    assert list(declared) == list(bundle.spec.columns)
    integers = integer_features(get_feature_store(tiny_platform), bundle.spec.feature_service)
    assert "user_impressions_7d" in integers and "user_ctr_7d" not in integers
    expected = {
        name: "long" if name in CONTEXT_NUMERIC else "Any" if name in integers else "double"
        for name in bundle.spec.numeric
    } | dict.fromkeys(bundle.spec.categorical, "string")
    assert declared == expected
    # The frozen rows hold every kind the signature has to admit: integer features as int64 and, where a value
    # was missing, as float64; strict types everywhere else.
    assert any(pd.api.types.is_integer_dtype(rows[n]) for n in integers if n in rows)
    assert all(rows[n].dtype == "float64" for n, t in declared.items() if t == "double")
    assert declared["position"] == "long" and declared["surface"] == "string"


def test_a_value_that_is_not_a_number_is_refused_by_name(champion):
    model, _, version = champion
    rows = pd.read_parquet(version.tags["test_set_path"]).head(5)
    rows["user_impressions_7d"] = rows["user_impressions_7d"].astype(object)
    rows.loc[rows.index[2], "user_impressions_7d"] = "twelve"
    with pytest.raises(ValueError, match="'user_impressions_7d' must be numeric: got 'twelve'"):
        model.predict(rows)
    with pytest.raises(Exception, match="price"):  # a strict column: MLflow's own check names it
        model.predict(rows.assign(price="cheap"))


def test_the_frozen_test_rows_predict_unchanged(champion):
    model, bundle, version = champion
    rows = pd.read_parquet(version.tags["test_set_path"])
    served = model.predict(rows)
    assert list(served.columns) == OUTPUTS and len(served) == len(rows)
    # The same scores the promotion gate computes on these rows, without MLflow's schema enforcement.
    direct = bundle.score_matrix(bundle.spec.frame_matrix(rows))
    for head in ("pctr", "pcvr", "pctcvr"):
        np.testing.assert_array_equal(served[head].to_numpy(), direct[head])
    assert served["pctr"].between(0, 1).all()


def online_frame(store, feature_service: str, user: str, products: list[str]) -> pd.DataFrame:
    """Feast's get_online_features as a client calls it: user and product views by (user, product), then the
    user-category and merchant views by the product's routing keys, as frames."""
    service = store.get_feature_service(feature_service)
    refs = {
        p.name_to_use(): [f"{p.name_to_use()}:{f.name}" for f in p.features] for p in service.feature_view_projections
    }
    first = store.get_online_features(
        features=refs["user_features"] + refs["product_features"],
        entity_rows=[{"user_id": user, "product_id": p} for p in products],
    ).to_df()
    second = store.get_online_features(
        features=refs["user_category_features"] + refs["merchant_features"],
        entity_rows=[
            {"user_id": user, "category_l1": c, "merchant_id": m}
            for c, m in zip(first["product_category_l1"], first["product_merchant_id"], strict=True)
        ],
    ).to_df()
    return pd.concat([first, second.drop(columns=["user_id"])], axis=1)


def test_a_frame_of_online_features_predicts_as_the_service_scores_it(champion, tiny_platform):
    model, bundle, _ = champion
    with duckdb.connect() as con:
        user = con.execute(
            "select user_id from read_parquet(?) group by 1 order by count(*) desc, 1 limit 1",
            [str(tiny_platform.marts_dir / "impression_labels.parquet")],
        ).fetchone()[0]
        products = [
            r[0]
            for r in con.execute(
                "select distinct product_id from read_parquet(?) order by 1 limit 6",
                [str(tiny_platform.marts_dir / "product_features.parquet")],
            ).fetchall()
        ]
    store = get_feature_store(tiny_platform)
    now = datetime.now(UTC)
    context = context_columns("home_feed", len(products), now, is_campaign_day=False)
    frame = online_frame(store, bundle.spec.feature_service, user, products).assign(**context)
    integers = integer_features(store, bundle.spec.feature_service)
    assert any(frame[n].dtype == "int64" for n in integers)  # what a `double` declaration used to refuse
    served = model.predict(frame)

    vectors = FeastReader(store, bundle.spec.feature_service).fetch(user, products, now)
    assert vectors.known_user and all(vectors.known_products) and not vectors.stale
    expected = bundle.score_matrix(vectors.model_matrix(bundle.spec, context, len(products)))
    for head in ("pctr", "pcvr", "pctcvr"):
        np.testing.assert_array_equal(served[head].to_numpy(), expected[head])

    # An unknown user, as Feast answers for one: every user feature missing, integer ones included.
    unknown_frame = online_frame(store, bundle.spec.feature_service, "u_nobody", products).assign(**context)
    anonymous = model.predict(unknown_frame)
    unknown = FeastReader(store, bundle.spec.feature_service).fetch("u_nobody", products, now)
    assert not unknown.known_user
    expected = bundle.score_matrix(unknown.model_matrix(bundle.spec, context, len(products)))
    for head in ("pctr", "pcvr", "pctcvr"):
        np.testing.assert_array_equal(anonymous[head].to_numpy(), expected[head])
