"""Stream feature views (issue 17): windowed behaviour per user and product, computed by the stream processor
(transforms/streaming, `make stream`) and written with Feast's push API.

Each view's source is a PushSource: the processor pushes rows online (`PushMode.ONLINE`), and writes the
same rows to the offline log under $SHOPRANK_HOME/stream_log/<view>/, the push source's batch source, which
training's point-in-time join reads. A row's `event_timestamp` (= `created_timestamp`) is the time it became
visible online, not the time of the events it counts: a training row at t sees exactly what the online store
held at t (docs/time_semantics.md, "Stream features"). TTLs count from that visible time: a user silent for an
hour has no current window or session, so the row is served as missing rather than stale.

ctr_model_v2_stream (feature_repo/feature_services.py) reads them; ctr_model_v1 does not. The user view's
category strings feed only the derived per-candidate features (platform_common/category_stream.py).
"""

from datetime import timedelta
from typing import Any

from data_sources import parquet_source
from entities import OWNER, product, user
from feast import FeatureView, Field, PushSource
from feast.types import Float64, Int64, String

from platform_common.settings import get_settings
from platform_common.stream_log import FEATURES, PRODUCT_VIEW, USER_VIEW, source_path

LOG_DIR = get_settings().stream_log_dir
USER_STREAM_TTL = timedelta(hours=1)
PRODUCT_STREAM_TTL = timedelta(hours=2)
_TYPES = {"int64": Int64, "double": Float64, "string": String}


def _log_source(view: str) -> Any:
    # the offline engine's source type (FileSource, or SparkSource under the spark engine: its compute engine
    # materializes only SparkSources); both read the glob of the log's parts
    return parquet_source(
        f"{view}_log",
        source_path(LOG_DIR, view),
        f"Offline log of {view}: every row the stream processor pushed online, and the backfill.",
        OWNER,
        {"producer": "transforms.streaming", "log": view},
    )


def _fields(view: str) -> list[Field]:
    return [Field(name=n, dtype=_TYPES[str(t)], description=d) for n, t, d in FEATURES[view]]


user_stream_push = PushSource(
    name="user_stream_push",
    batch_source=_log_source(USER_VIEW),
    description="Rows of user_stream_features pushed by the stream processor.",
    owner=OWNER,
)
product_stream_push = PushSource(
    name="product_stream_push",
    batch_source=_log_source(PRODUCT_VIEW),
    description="Rows of product_stream_features pushed by the stream processor.",
    owner=OWNER,
)

user_stream_features = FeatureView(
    name=USER_VIEW,
    entities=[user],
    ttl=USER_STREAM_TTL,
    schema=_fields(USER_VIEW),
    source=user_stream_push,
    online=True,
    description=(
        "A shopper's last minutes: clicks in 5 and 30 min, the current session, time since the last click, and the "
        "categories clicked."
    ),
    owner=OWNER,
    tags={"team": "ranking", "grain": "user x event", "producer": "stream"},
)

product_stream_features = FeatureView(
    name=PRODUCT_VIEW,
    entities=[product],
    ttl=PRODUCT_STREAM_TTL,
    schema=_fields(PRODUCT_VIEW),
    source=product_stream_push,
    online=True,
    description="A product's last hour: clicks and impressions.",
    owner=OWNER,
    tags={"team": "ranking", "grain": "product x event", "producer": "stream"},
)
