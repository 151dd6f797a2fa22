"""`make demo`'s stream step: a shopper the platform has never seen clicks three products of one category.

The clicks go into the event stream as the live shoppers' do (platform_common/event_stream); the stream processor
(`python -m transforms.streaming run`, its own process, as `make stream` starts it) turns them into the user's
windowed features, pushes them through Feast into the online store and logs them for training; the next /rank
answer reads them. The step prints how long that took and how the answer moved. A shopper id of its own keeps the
demo's clicks off every real shopper's features: only this user's rows (and the clicked products' hourly counts)
change.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from rich.table import Table

from platform_common.event_stream import open_stream
from platform_common.settings import REPO_ROOT, Settings, export_env
from platform_common.stream_log import FEATURES, USER_VIEW
from transforms.streaming.catalogue import load_catalogue
from transforms.streaming.metrics import metrics_path

if TYPE_CHECKING:
    from feast import FeatureStore

CONSUMER = "demo"
CLICKS = 3
# The processor reads in batches of up to 200 ms when idle; the Feast push of one row takes a fraction of a
# second. 60 s covers a loaded machine with a wide margin, and a timeout is reported, never silently passed.
VISIBLE_TIMEOUT_S = 60.0


def rank(client: httpx.Client, url: str, user: str, products: list[str]) -> dict[str, Any]:
    response = client.post(f"{url}/rank", json={"user_id": user, "product_ids": products}, timeout=30)
    response.raise_for_status()
    return response.json()


def pctr_by_product(answer: dict[str, Any]) -> dict[str, float]:
    return {r["product_id"]: r["pctr"] for r in answer["ranking"]}


def pick_clicks(catalogue: dict[str, str], candidates: list[str], answer: dict[str, Any]) -> tuple[str, list[str]]:
    """The category of the lowest-ranked candidate with a known category, and three other products of it."""
    ranked = [r["product_id"] for r in sorted(answer["ranking"], key=lambda r: r["rank"])]
    known = [p for p in ranked if p in catalogue]
    if not known:
        raise SystemExit("demo: no candidate is in the landed products table; run `make data` first")
    category = catalogue[known[-1]]
    others = sorted(p for p, c in catalogue.items() if c == category and p not in set(candidates))
    if len(others) < CLICKS:
        raise SystemExit(f"demo: category {category!r} has fewer than {CLICKS} products outside the candidates")
    return category, others[:CLICKS]


def start_processor(settings: Settings) -> subprocess.Popen[bytes]:
    log = settings.logs_dir / "demo-stream-processor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    metrics_path(settings.stream_dir, CONSUMER).unlink(missing_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "transforms.streaming", "run", "--consumer", CONSUMER, "--metrics-seconds", "1"],
            cwd=REPO_ROOT,
            env=export_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 300
    while not metrics_path(settings.stream_dir, CONSUMER).exists():  # written once its loop runs
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"demo: the stream processor did not start; see {log}")
        time.sleep(0.2)
    return proc


def stop_processor(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # SIGTERM: it finishes its batch, acknowledges and writes its metrics
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def online_user_row(store: FeatureStore, user: str) -> dict[str, Any]:
    names = [name for name, _, _ in FEATURES[USER_VIEW]]
    row = store.get_online_features(
        features=[f"{USER_VIEW}:{n}" for n in names], entity_rows=[{"user_id": user}]
    ).to_dict()
    return {n: row[n][0] for n in names}


def run(settings: Settings, url: str, candidates: list[str], reads_stream: bool, console: Console) -> None:
    from platform_common.feast_config import get_feature_store

    catalogue = load_catalogue(settings.raw_dir)
    store = get_feature_store(settings)  # once: each construction reads the registry
    user = f"demo_shopper_{time.time_ns() // 1_000_000}"  # new per run: a reused event id would be a duplicate
    with httpx.Client() as client:
        before = rank(client, url, user, candidates)
        category, clicked = pick_clicks(catalogue, candidates, before)
        console.print(
            f"\n[bold]The stream:[/] new shopper {user} clicks {CLICKS} products of [bold]{category}[/] "
            f"({', '.join(clicked)})"
        )
        proc = start_processor(settings)
        try:
            stream = open_stream(settings)
            now_us = time.time_ns() // 1000
            stream.publish(
                [
                    {
                        "kind": "click",
                        "event_id": f"{user}-c{i}",
                        "user_id": user,
                        "product_id": product,
                        "impression_id": f"{user}-i{i}",
                        "event_ts": now_us - (CLICKS - 1 - i) * 1_000_000,  # a second apart, the last one now
                        "ingested_at": now_us,
                    }
                    for i, product in enumerate(clicked)
                ]
            )
            stream.close()
            published = time.monotonic()
            after, seen_ms = before, None
            while time.monotonic() - published < VISIBLE_TIMEOUT_S:
                after = rank(client, url, user, candidates)
                if pctr_by_product(after) != pctr_by_product(before):
                    seen_ms = (time.monotonic() - published) * 1000
                    break
                if not reads_stream and online_user_row(store, user)["us_session_clicks"]:
                    seen_ms = (time.monotonic() - published) * 1000
                    break
                time.sleep(0.05)
            row = online_user_row(store, user)
        finally:
            stop_processor(proc)
    if seen_ms is None:
        raise SystemExit(
            f"demo: the clicks were not visible within {VISIBLE_TIMEOUT_S:.0f} s; see "
            f"{settings.logs_dir / 'demo-stream-processor.log'}"
        )
    console.print(
        f"Online store row of {USER_VIEW} for {user} (pushed through Feast by the processor): "
        f"session clicks {row['us_session_clicks']}, clicks in 30 min {row['us_clicks_30m']}, "
        f"categories of the session's clicks {row['us_session_click_categories']!r}"
    )
    if not reads_stream:
        console.print(
            "[yellow]The champion does not read the stream features[/] (it is the batch-only model: the gate did "
            "not promote the stream model, or it was rolled back), so the answer does not move; the features were "
            f"online {seen_ms:.0f} ms after the clicks were published."
        )
        return
    console.print(f"The next /rank answer moved [bold]{seen_ms:.0f} ms[/] after the clicks were published.")
    table = Table(title=f"{user}: the same candidates before and after the clicks ({after['model']['name']} "
                  f"v{after['model']['version']}; {category} in green)")  # fmt: skip
    for col in ("product_id", "category", "rank", "pctr before", "pctr after", "ratio"):
        table.add_column(col)
    rank_before = {r["product_id"]: r["rank"] for r in before["ranking"]}
    pctr_before = pctr_by_product(before)
    for item in sorted(after["ranking"], key=lambda r: r["rank"]):
        pid = item["product_id"]
        style = "green" if catalogue.get(pid) == category else None
        table.add_row(
            pid,
            catalogue.get(pid, "-"),
            f"{rank_before[pid]} -> {item['rank']}",
            f"{pctr_before[pid]:.4f}",
            f"{item['pctr']:.4f}",
            f"{item['pctr'] / pctr_before[pid]:.2f}x" if pctr_before[pid] > 0 else "-",
            style=style,
        )
    console.print(table)
