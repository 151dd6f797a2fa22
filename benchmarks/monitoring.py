"""`make bench-monitor`: does `make monitor` name each planted incident, and stay silent on clean worlds?

For each seed, a clean SCALE=tiny world (`make data features apply materialize`, fixed END_DATE) and one world
per planted incident (simulator/incidents.py) starting on day X = END_DATE - 2. Each world is judged on the
three daily windows X-1, X and X+1, as of 6 h after each window closes. An incident is detected when the
expected check names the expected target in a window on or after X; the delay is in daily runs (0: the run
of the day it started). Any alert on a clean world, or before X on an incident world, is a false alarm.
No model is trained in those worlds, so mart drift judges every mart column.

The fifth incident, the mis-calibrated challenger promoted by force, needs a model and live traffic: per
`--challenger-seeds`, a whole platform ending today (`make data features apply materialize train promote`, the
served features must be fresh), then `benchmarks.miscalibrated_challenger.live_incident`: live shoppers against the
champion, the challenger (pCTR x3) planted and promoted with FORCE, live shoppers against it, the orders' attribution
window fast-forwarded (their pending clicks and orders landed), and today's window judged as of 25 h after it
closes. Detected: `model.calibration` or `model.ctr_ratio` names the challenger; false alarm: any alert naming the
champion judged in the same window, or any feature alert (the landing zone's row counts do fire: live shoppers are
several times a tiny world's day, listed as such).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from platform_common.settings import Settings
from serving.monitoring.alerts import Alert, Window
from serving.monitoring.config import load_thresholds

REPO = Path(__file__).resolve().parents[1]
# incident -> (INCIDENT target, expected check, expected target)
INCIDENTS = {
    "zero_column": ("discount_pct", "feature.mart_drift_zeros", "product_features.discount_pct"),
    "late_batch": ("", "data_quality.landing_freshness", "impressions"),
    "price_shock": ("electronics", "data_quality.category_price", "product_prices[category=electronics]"),
    "traffic_drop": ("search", "data_quality.row_count", "impressions[surface=search]"),
}


def build(
    home: Path, seed: int, end: date | None, incident: str | None, targets: tuple[str, ...], reuse: bool
) -> float:
    """`make <targets>` into `home`; with `reuse`, a home already built for the same spec is kept as it is."""
    spec = f"seed={seed} end={end} incident={incident} targets={' '.join(targets)}"
    marker = home / "bench-monitor.spec"
    if reuse and marker.exists() and marker.read_text() == spec:
        return float("nan")
    env = dict(os.environ) | {"SHOPRANK_HOME": str(home), "SCALE": "tiny", "SEED": str(seed)}
    env.pop("SHOPRANK_SCALE", None)
    args = ["make", "--no-print-directory", *targets] + ([f"END_DATE={end.isoformat()}"] if end else [])
    if incident:
        args.append(f"INCIDENT={incident}")
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    marker.write_text(spec)
    return time.perf_counter() - started


def judge(home: Path, days: list[date]) -> dict[date, list[Alert]]:
    from serving.monitoring.run import monitor

    os.environ["SHOPRANK_HOME"] = str(home)
    settings = Settings(home=home, scale="tiny")
    th = load_thresholds()
    out = {}
    for day in days:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        window = Window(start, start + timedelta(days=1))
        outcome = monitor(settings, th, window, as_of=window.end + timedelta(hours=6), log_to_mlflow=False)
        out[day] = outcome.result.alerts
    return out


def challenger(home: Path, seed: int, reuse: bool) -> str:
    """One world's mis-calibrated challenger run; its row of the detection table."""
    from benchmarks.miscalibrated_challenger import land_pending, live_incident
    from serving.monitoring.run import monitor

    build(home, seed, None, None, ("clean", "data", "features", "apply", "materialize", "train", "promote"), reuse)
    os.environ["SHOPRANK_HOME"] = str(home)
    settings = Settings(home=home, scale="tiny")
    incident = live_incident(settings, factor=3.0, rate=30.0, seconds=40.0, seed=seed)
    land_pending(settings, hours=20)
    first = datetime.fromtimestamp(incident.started, UTC)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    window = Window(start, start + timedelta(days=(datetime.now(UTC) - start).days + 1))
    alerts = monitor(
        settings, load_thresholds(), window, window.end + timedelta(hours=25), f"bench-{seed}", log_to_mlflow=False
    ).result.alerts
    new, old = f"v{incident.challenger} ", f"v{incident.champion} "
    hits = sorted({f"`{a.check}` {a.target}" for a in alerts if a.target.startswith(new)})
    false = [f"{a.check} {a.target}" for a in alerts if a.target.startswith(old) or a.check.startswith("feature.")]
    volume = sorted({a.target for a in alerts if a.check.startswith("data_quality.")})
    return (
        f"| mis-calibrated challenger (pCTR x3, forced) | {seed} | {incident.answered[0]} / {incident.answered[1]} | "
        f"{'yes' if any(h.startswith(('`model.calibration`', '`model.ctr_ratio`')) for h in hits) else 'NO'}: "
        f"{'; '.join(hits) or '-'} | 0 runs | {len(false)} {('(' + '; '.join(false) + ')') if false else ''} | "
        f"{', '.join(volume) or '-'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--incident-seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--end-date", type=date.fromisoformat, default=date(2026, 3, 12))
    parser.add_argument("--root", type=Path, default=Path("/tmp/shoprank-bench-monitor"))
    parser.add_argument("--reuse", action="store_true", help="Keep homes already built for the same spec.")
    parser.add_argument("--challenger-seeds", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    end: date = args.end_date
    start = end - timedelta(days=2)
    days = [start - timedelta(days=1), start, start + timedelta(days=1)]
    clean_rows, incident_rows = [], []
    for seed in args.seeds:
        home = args.root / f"clean-{seed}"
        build(home, seed, end, None, ("clean", "data", "features", "apply", "materialize"), args.reuse)
        alerts = judge(home, days)
        fired = [f"{d}: {a.check} {a.target}" for d, found in alerts.items() for a in found]
        clean_rows.append(f"| {seed} | {len(days)} | {len(fired)} | {'; '.join(fired) or '-'} |")
        print(clean_rows[-1], flush=True)
    for kind, (target, check, expected) in INCIDENTS.items():
        for seed in args.incident_seeds:
            home = args.root / f"{kind}-{seed}"
            spec = f"{kind}{':' + target if target else ''}@{start.isoformat()}"
            build(home, seed, end, spec, ("clean", "data", "features"), args.reuse)
            alerts = judge(home, days)
            hits = [d for d in days if d >= start and any(a.check == check and a.target == expected for a in alerts[d])]
            delay = f"{(hits[0] - start).days} run(s)" if hits else "-"
            before = [f"{a.check} {a.target}" for a in alerts[days[0]]]
            also = sorted({f"{a.check} {a.target}" for d in days[1:] for a in alerts[d]} - {f"{check} {expected}"})
            incident_rows.append(
                f"| `{spec}` | {seed} | `{check}` {expected} | {'yes' if hits else 'NO'} | {delay} | "
                f"{len(before)} | {'; '.join(also) or '-'} |"
            )
            print(incident_rows[-1], flush=True)
    challenger_rows = []
    for seed in args.challenger_seeds:
        challenger_rows.append(challenger(args.root / f"challenger-{seed}", seed, args.reuse))
        print(challenger_rows[-1], flush=True)
    print(f"\nClean worlds (SCALE=tiny, END_DATE={end}, windows {days[0]}..{days[-1]}):\n")
    print("| seed | daily runs | alerts (false alarms) | which |\n|---|---|---|---|")
    print("\n".join(clean_rows))
    print("\nPlanted incidents (start X = END_DATE - 2):\n")
    print("| incident | seed | expected alert | detected | delay | alerts the day before | other alerts from X on |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(incident_rows))
    if challenger_rows:
        print("\nMis-calibrated challenger (whole platform ending today, live shoppers, today's window):\n")
        print(
            "| incident | seed | live answers (champion / challenger) | detected | delay | false alarms "
            "(champion, features) | landing-zone alerts (live volume) |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(challenger_rows))


if __name__ == "__main__":
    main()
