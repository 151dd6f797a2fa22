"""`make demo`'s last step: serve the champion, send one real /rank request, print the answer; then the stream
step (serving/demo_stream.py): a new shopper's clicks reach the next answer through the stream processor."""

from __future__ import annotations

import os

import duckdb
import httpx
from rich.console import Console
from rich.table import Table

from platform_common.settings import Settings, get_settings
from platform_common.stream_log import USER_VIEW
from serving import demo_stream
from serving.launcher import running_service

console = Console()


def sample_request(n_candidates: int = 10) -> dict:
    """The busiest user, a fixed sample of catalogue products, and one unknown id to show the flag."""
    marts = get_settings().marts_dir
    with duckdb.connect() as con:
        busiest = con.execute(
            "select user_id from read_parquet(?) group by user_id order by count(*) desc, user_id limit 1",
            [str(marts / "impression_labels.parquet")],
        ).fetchone()
        if busiest is None:
            raise SystemExit("demo: impression_labels is empty; run `make data features` first")
        user = busiest[0]
        products = [
            r[0]
            for r in con.execute(
                "select distinct product_id from read_parquet(?) order by hash(product_id) limit ?",
                [str(marts / "product_features.parquet"), n_candidates],
            ).fetchall()
        ]
    products = list(dict.fromkeys(products))[:n_candidates]
    return {"user_id": user, "product_ids": products + ["p_does_not_exist"], "surface": "home_feed"}


def main() -> None:
    settings = get_settings()
    port = int(os.environ["PORT"]) if os.environ.get("PORT") else None
    with running_service(settings, port=port) as url:
        request = sample_request()
        console.print(f"[bold]POST {url}/rank[/]")
        console.print_json(data=request)
        response = httpx.post(f"{url}/rank", json=request, timeout=30)
        response.raise_for_status()
        body = response.json()
        print_answer(body)
        service = httpx.get(f"{url}/readyz", timeout=30).json().get("feature_service") or ""
        reads_stream = USER_VIEW in feature_service_views(settings, service)
        known = [p for p in request["product_ids"] if p != "p_does_not_exist"]
        demo_stream.run(settings, url, known, reads_stream, console)


def feature_service_views(settings: Settings, name: str) -> set[str]:
    from platform_common.feast_config import get_feature_store

    if not name:
        return set()
    service = get_feature_store(settings).get_feature_service(name)
    return {projection.name for projection in service.feature_view_projections}


def print_answer(body: dict) -> None:
    table = Table(
        title=f"{body['user_id']} on {body['surface']} - {body['model']['name']} "
        f"v{body['model']['version']} (known user: {body['known_user']})"
    )
    for col in ("rank", "product_id", "expected_gmv", "pctr", "pcvr", "new_merchant", "known_product"):
        table.add_column(col)
    for item in body["ranking"]:
        table.add_row(
            str(item["rank"]),
            item["product_id"],
            f"{item['expected_gmv']:.4f}",
            f"{item['pctr']:.4f}",
            f"{item['pcvr']:.4f}",
            str(item["new_merchant"]),
            str(item["known_product"]),
        )
    console.print(table)


if __name__ == "__main__":
    main()
