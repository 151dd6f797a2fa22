"""One feature service per model: the exact feature set a model version was trained on."""

from entities import OWNER
from feast import FeatureService
from features import merchant_features, product_features, user_category_features, user_features

ctr_model_v1 = FeatureService(
    name="ctr_model_v1",
    features=[user_features, user_category_features, product_features, merchant_features],
    description="Features of the click-through-rate model (and the conversion model paired with it).",
    owner=OWNER,
    tags={"model": "ctr", "version": "1"},
)
