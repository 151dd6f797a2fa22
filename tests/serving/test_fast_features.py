"""The fast read paths return exactly what Feast's `get_online_features` returns (plus the TTL rule)."""

from __future__ import annotations

import ast
import math
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from platform_common.feast_config import get_feature_store
from platform_common.settings import Settings
from serving.champion import load_champion
from serving.features.base import UNKNOWN_KEY, FeatureStoreUnavailable
from serving.features.direct import DirectReader
from serving.features.factory import make_reader
from serving.features.feast import FeastReader
from serving.features.routing import Lookup, check_views
from serving.features.snapshot import SnapshotReader
from serving.ranking import context_columns
from serving.scoring import score_matrix

SERVICE = "ctr_model_v1"


@pytest.fixture(scope="module")
def store(tiny_platform):
    return get_feature_store(tiny_platform)


@pytest.fixture(scope="module")
def snapshot(tiny_platform):
    reader = SnapshotReader(lambda: get_feature_store(tiny_platform), SERVICE, poll_seconds=3600)
    yield reader
    reader.close()


@pytest.fixture(scope="module")
def sample(tiny_platform):
    query = "select distinct {col} from read_parquet(?) order by 1 limit {n}"
    marts = tiny_platform.marts_dir
    with duckdb.connect() as con:
        users = con.execute(query.format(col="user_id", n=8), [str(marts / "user_features.parquet")]).fetchall()
        products = con.execute(
            query.format(col="product_id", n=60), [str(marts / "product_features.parquet")]
        ).fetchall()
    return [u for (u,) in users] + ["u_nobody"], [p for (p,) in products] + ["p_nothing", "p\x00weird"]


def _plain(v: object) -> object:
    """Numpy scalars as Python values; NaN (the fast path's missing number) as None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _same(a: object, b: object) -> bool:
    a, b = _plain(a), _plain(b)
    if a is None or b is None:
        return a is None and b is None
    return a == b


def _newest(store) -> datetime:
    return max(end for fv in store.list_feature_views() for _, end in fv.materialization_intervals)


def test_snapshot_values_equal_get_online_features_value_for_value(store, snapshot, sample):
    """Raw Feast answers, view by view, for users, products, user-category pairs and merchants."""
    users, products = sample
    tables = snapshot.snapshot.tables
    for view, table in tables.items():
        features = snapshot.layout.features[view]
        keys = list(table.index)[:40] + ([("u_nobody", "fashion")] if len(table.join_keys) > 1 else ["nobody"])
        rows = [dict(zip(table.join_keys, k if isinstance(k, tuple) else (k,), strict=True)) for k in keys]
        answer = store.get_online_features(features=[f"{view}:{f}" for f in features], entity_rows=rows).to_dict()
        for i, key in enumerate(keys):
            row = table.index.get(key, table.n)
            for f in features:
                expected, got = answer[f][i], table.python_value(f, row)
                assert got == expected and type(got) is type(expected), (view, key, f, got, expected)


@pytest.mark.parametrize("days_after", [0, 1, 3, 10])
def test_every_reader_serves_the_same_vectors(tiny_platform, store, snapshot, sample, days_after):
    """Snapshot and direct reads equal the reference reader (Feast + TTL rule), fresh and expired."""
    users, products = sample
    now = _newest(store) + timedelta(days=days_after)
    reference = FeastReader(store, SERVICE)
    direct = DirectReader(get_feature_store(tiny_platform), SERVICE)
    for user in users[:4] + ["u_nobody"]:
        expected = reference.fetch(user, products, now=now)
        for reader in (snapshot, direct):
            got = reader.fetch(user, products, now=now)
            assert got.known_user == expected.known_user
            assert got.known_products == expected.known_products
            assert got.stale == expected.stale
            assert set(got.columns) == set(expected.columns)
            for name, values in expected.columns.items():
                pairs = zip(products, values, got.columns[name], strict=True)
                mismatches = [(p, a, b) for p, a, b in pairs if not _same(a, b)]
                assert not mismatches, (reader.mode, name, mismatches[:3])
    if days_after >= 3:
        assert expected.stale, "expected some rows past their TTL"


def test_fast_model_matrix_and_scores_equal_the_reference(tiny_platform, store, snapshot, sample):
    users, products = sample
    model = load_champion(tiny_platform)
    spec = model.bundle.spec
    now = datetime.now(UTC)
    reference = FeastReader(store, SERVICE)
    for user in users[:3] + ["u_nobody"]:
        context = context_columns("search", len(products), now, True)
        slow = reference.fetch(user, products, now=now).model_matrix(spec, context, len(products))
        fast = snapshot.fetch(user, products, now=now).model_matrix(spec, context, len(products))
        assert np.array_equal(slow, fast, equal_nan=True)
        expected, got = model.bundle.score_matrix(fast), score_matrix(model.bundle, fast)
        assert expected.keys() == got.keys()
        assert all(np.array_equal(expected[k], got[k]) for k in expected)


def test_snapshot_reloads_when_the_registry_shows_a_new_materialization(tiny_platform, snapshot):
    assert snapshot.refresh() is False  # nothing new: only a probe of the store
    before = snapshot.snapshot
    assert snapshot.refresh(force=True) is True
    assert snapshot.snapshot is not before and snapshot.snapshot.rows == before.rows


def test_readers_fail_with_a_reason_when_the_store_is_missing(tiny_platform, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(tiny_platform.home_dir / "feast", home / "feast")
    settings = Settings(home=home, scale="tiny")
    (home / "feast" / "online_store.db").unlink()
    for mode in ("snapshot", "direct"):
        with pytest.raises(FeatureStoreUnavailable, match="missing"):
            make_reader(lambda: get_feature_store(settings), SERVICE, mode=mode)
    assert not (home / "feast" / "online_store.db").exists(), "a read must never create an empty store"
    (home / "feast" / "online_store.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(FeatureStoreUnavailable, match="corrupt"):
        make_reader(lambda: get_feature_store(settings), SERVICE, mode="snapshot")


# --------------------------------------------------------------------------------------------------------------
# The package itself: the routing table, argument checks, reuse, no import cycle (no platform needed but one)
# --------------------------------------------------------------------------------------------------------------


def test_the_lookup_routes_by_the_stored_product_row():
    stored = {"product_category_l1": ["shoes", None, ""], "product_merchant_id": ["m1", None, "m2"]}
    lookup = Lookup.route("u1", ["p1", "p2", "p3"], stored)
    assert lookup.known_products == [True, False, True]
    assert lookup.keys(("user_id", "category_l1")) == [("u1", "shoes"), ("u1", UNKNOWN_KEY), ("u1", UNKNOWN_KEY)]
    assert lookup.keys(("merchant_id",)) == ["m1", UNKNOWN_KEY, "m2"]
    assert lookup.keys(("product_id",)) == ["p1", "p2", "p3"]
    rows = lookup.second_step_rows()
    assert rows[1] == {"user_id": "u1", "category_l1": UNKNOWN_KEY, "merchant_id": UNKNOWN_KEY}
    assert [list(r) for r in rows] == [["user_id", "category_l1", "merchant_id"]] * 3


def test_a_feature_service_without_what_the_lookup_needs_is_refused():
    with pytest.raises(ValueError, match=r"lacks views the service needs: \['product_features'\]"):
        check_views("svc", {"user_features": ["country"]})
    with pytest.raises(ValueError, match=r"product_features lacks the routing features \['product_merchant_id'\]"):
        check_views("svc", {"user_features": [], "product_features": ["price", "product_category_l1"]})
    check_views("svc", {"user_features": [], "product_features": ["product_category_l1", "product_merchant_id"]})


def _no_store():
    raise AssertionError("the store must not be opened for a bad argument")


def test_an_unknown_read_mode_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match="SHOPRANK_FEATURE_READ='fast': expected one of snapshot, direct, feast"):
        make_reader(_no_store, SERVICE, mode="fast")


@pytest.mark.parametrize("poll", [0.0, -1.0, math.nan, math.inf])
def test_a_snapshot_poll_interval_must_be_a_positive_number(poll):
    with pytest.raises(ValueError, match="poll interval must be a positive number of seconds"):
        SnapshotReader(_no_store, SERVICE, poll_seconds=poll)


def test_make_reader_keeps_a_reader_of_the_same_mode_and_service(tiny_platform):
    first = make_reader(lambda: get_feature_store(tiny_platform), SERVICE, mode="direct")
    assert make_reader(_no_store, SERVICE, mode="direct", previous=first) is first
    other = make_reader(lambda: get_feature_store(tiny_platform), SERVICE, mode="feast", previous=first)
    assert other is not first and other.mode == "feast" and other.requested_mode == "feast"


def _module_imports(root: Path, module: str) -> set[str]:
    """Modules of `serving` a module imports when it is loaded (module level only, with their packages)."""
    path = root / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = root / module.replace(".", "/") / "__init__.py"
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:  # not under `if TYPE_CHECKING:` nor inside functions
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    found: set[str] = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            candidate = ".".join(parts[:i])
            base = root / candidate.replace(".", "/")
            if parts[0] == "serving" and (base.with_suffix(".py").exists() or (base / "__init__.py").exists()):
                found.add(candidate)
    found.discard(module)
    return found


def test_the_feature_package_has_no_import_cycle():
    root = Path(__file__).resolve().parents[2]
    start = ["serving.features"] + [f"serving.features.{p.stem}" for p in (root / "serving/features").glob("*.py")]
    graph: dict[str, set[str]] = {}
    todo = list(start)
    while todo:
        module = todo.pop()
        if module not in graph:
            graph[module] = _module_imports(root, module)
            todo.extend(graph[module])
    assert "serving.features.snapshot" in graph["serving.features.factory"]  # the parse sees the imports

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        for nxt in sorted(graph[module]):
            found = cycle_from(nxt, [*path, module])
            if found:
                return found
        return None

    for module in sorted(graph):
        cycle = cycle_from(module, [])
        assert cycle is None, " -> ".join(cycle)
