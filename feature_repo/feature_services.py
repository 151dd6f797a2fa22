"""One feature service per model: the exact feature set a model version was trained on."""

from campaign_features import product_campaign_plan
from entities import OWNER
from feast import FeatureService
from features import merchant_features, product_features, user_category_features, user_features
from stream_features import product_stream_features, user_stream_features

ctr_model_v1 = FeatureService(
    name="ctr_model_v1",
    features=[user_features, user_category_features, product_features, merchant_features],
    description="Features of the click-through-rate model (and the conversion model paired with it).",
    owner=OWNER,
    tags={"model": "ctr", "version": "1"},
)

# Issue 17: v1's features plus the stream views (feature_repo/stream_features.py). A separate service, so the
# champion trained on ctr_model_v1 keeps reading exactly what it was trained on; `make train
# FEATURE_SERVICE=ctr_model_v2_stream` trains on this one (backfill the stream log first: `make stream-backfill`).
ctr_model_v2_stream = FeatureService(
    name="ctr_model_v2_stream",
    features=[
        user_features,
        user_category_features,
        product_features,
        merchant_features,
        user_stream_features,
        product_stream_features,
    ],
    description=(
        "ctr_model_v1's features plus the user's and product's windowed stream features (issue 17); the user's "
        "click-category strings feed derived per-candidate features (platform_common/category_stream.py)."
    ),
    owner=OWNER,
    tags={"model": "ctr", "version": "2", "stream": "true"},
)

# Issue 18, section 4: v1's features plus the day's published campaign plan (feature_repo/campaign_features.py), so
# the model knows a mega sale and its discounts on the day itself. A separate service: the champion trained on
# ctr_model_v1 keeps reading exactly what it was trained on (`make train FEATURE_SERVICE=ctr_model_v3_calendar`).
ctr_model_v3_calendar = FeatureService(
    name="ctr_model_v3_calendar",
    features=[user_features, user_category_features, product_features, merchant_features, product_campaign_plan],
    description="ctr_model_v1's features plus the product's campaign plan of the day (day kind, discount, price).",
    owner=OWNER,
    tags={"model": "ctr", "version": "3", "calendar": "true"},
)
