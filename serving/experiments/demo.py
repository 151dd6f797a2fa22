"""`make demo-experiment`: an A/B experiment of the champion against a clearly worse ranker, on live shoppers.

On the state `make demo` left: registers a random-order baseline (once; reused after), starts the service,
starts an experiment with a planned stop (the pre-registered horizon: control = the baseline, treatment = the
champion, so a working champion shows a positive lift), sends live traffic until the planned stop, waits for
the exposure log, writes the report and summary.json, stops the service, and prints the report's path and the
headline lift with its interval beside the oracle's true lift.

`--control v1 --stream` instead compares the champion with another model on the same live traffic, the stream
processor running beside the service (issue 17: the stream champion against the batch-only v1; the control arm
must read a subset of the champion's columns, docs/experiments.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console

console = Console()


def _baseline_version(settings: object, kind: str) -> str:
    from platform_common.registry import connect
    from platform_common.settings import Settings
    from training.baseline import BASELINE_TAG, register_baseline

    assert isinstance(settings, Settings)
    client = connect(settings)
    for mv in client.search_model_versions(f"name = '{settings.model_name}'"):
        if mv.tags.get(BASELINE_TAG) == kind:
            return str(mv.version)
    return register_baseline(kind, settings)


# Orders come a median 25 minutes after the click: a run of minutes would be read before its orders exist. The
# demo's shoppers check out this many times faster (when, never whether: probabilities and truth unchanged), and
# the report's attribution window shrinks by as much, so a day's window becomes two minutes.
CHECKOUT_SPEEDUP = 720.0
REAL_WINDOW_MINUTES = 1440.0


def main(
    rate: Annotated[float, typer.Option(min=1.0, max=2000.0, help="Live requests per second.")] = 200.0,
    seconds: Annotated[
        float, typer.Option(min=5.0, max=3600.0, help="Length of the experiment (its planned stop).")
    ] = 600.0,
    linger: Annotated[
        float | None,
        typer.Option(min=0.0, max=3600.0, help="Keep landing outcomes this long after (default: the window + 15 s)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the live shoppers.")] = 7,
    salt: Annotated[str | None, typer.Option(help="Assignment salt (default: the experiment id).")] = None,
    kind: Annotated[str, typer.Option(help="The worse ranker: random or popularity.")] = "random",
    checkout_speedup: Annotated[
        float, typer.Option(min=1.0, max=10_000.0, help="Divide the click-to-order delay by this (1 = the history's).")
    ] = CHECKOUT_SPEEDUP,
    window_minutes: Annotated[
        float | None,
        typer.Option(min=0.1, help="Attribution window of the report (default: a day / the checkout speed-up)."),
    ] = None,
    design: Annotated[str, typer.Option(help="ab (users split) or interleaving (every answer merged).")] = "ab",
    control: Annotated[
        str | None,
        typer.Option(help="The control arm's model (a version such as v1, or an alias) instead of the worse ranker."),
    ] = None,
    stream: Annotated[
        bool, typer.Option(help="Run the stream processor beside the service (arms that read the stream views).")
    ] = False,
) -> None:
    window = window_minutes if window_minutes is not None else REAL_WINDOW_MINUTES / checkout_speedup
    linger = linger if linger is not None else window * 60.0 + 15.0
    from platform_common.settings import get_settings
    from serving.experiments import store
    from serving.experiments.model import TARGET_PATTERN, build
    from serving.experiments.report import write_report
    from serving.launcher import running_service, running_stream_processor
    from simulator.live.cli import live_progress
    from simulator.live.client import run_live
    from training.audit import actor

    settings = get_settings()
    if control is not None and not TARGET_PATTERN.match(control):
        raise typer.BadParameter(
            f"{control!r} is neither a version (3 or v3) nor a registry alias", param_hint="--control"
        )
    control_target = control if control is not None else f"v{_baseline_version(settings, kind)}"
    control_label = f"model {control}" if control is not None else f"{kind} baseline {control_target}"
    experiment_id = f"demo-{datetime.now(UTC):%Y%m%dt%H%M%S}-{secrets.token_hex(2)}"
    console.print(
        f"[bold]demo-experiment[/] {experiment_id}: control = {control_label}, treatment = champion; "
        f"{rate:g} req/s for {seconds:g} s, checkout {checkout_speedup:g}x faster, attribution window "
        f"{window:g} min, then {linger:g} s for the last outcomes to land",
        highlight=False,
        soft_wrap=True,
    )
    env = {"SHOPRANK_REQUEST_LOG_FLUSH_SECONDS": "1", "SHOPRANK_RELOAD_SECONDS": "2"}
    processor = running_stream_processor(settings, seconds + linger + 60) if stream else contextlib.nullcontext()
    with processor, running_service(settings, extra_env=env) as url:
        # Every worker follows the registry every SHOPRANK_RELOAD_SECONDS: start a little ahead so each holds the
        # experiment when it begins (the window is then exact to the request), and stop at the planned horizon.
        start = datetime.now(UTC) + timedelta(seconds=6)
        experiment = build(
            experiment_id,
            design,
            f"control={control_target}:0.5,treatment=champion:0.5",
            salt,
            start,
            start + timedelta(seconds=seconds),
            created_by=actor(),
        )
        store.start(settings, experiment)
        console.print(f"started {experiment.describe()}", highlight=False, soft_wrap=True)
        time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()) + 0.5)
        remaining = (experiment.end - datetime.now(UTC)).total_seconds() if experiment.end else seconds
        with live_progress(remaining, console) as progress:
            stats = asyncio.run(
                run_live(
                    settings.raw_dir,
                    settings.oracle_dir,
                    url,
                    rate,
                    max(remaining - 0.5, 1.0),
                    seed=seed,
                    linger_seconds=linger,
                    checkout_speedup=checkout_speedup,
                    progress=progress,
                )
            )
        console.print(
            f"live: {stats.answered:,} answered ({stats.rate():,.0f}/s), {stats.experiment_answers:,} under the "
            f"experiment, {stats.failed:,} failed; outcomes landed {dict(stats.landed)}",
            highlight=False,
        )
        time.sleep(3)  # the exposure log flushes every second
    analysis, report, summary_path = write_report(settings, experiment_id, timedelta(minutes=window))
    s = analysis.summary
    m = s.metrics["gmv_per_request"]
    console.print(f"report: {report}\nsummary: {summary_path}", highlight=False, soft_wrap=True)
    truth = f"{m.true_lift:+.1%}" if m.true_lift is not None else "unknown"
    estimable = bool((m.model_extra or {}).get("estimable", True))
    headline = (
        f"{m.lift:+.1%} (95% CI {m.ci_low:+.1%} .. {m.ci_high:+.1%})"
        if estimable
        else "not estimable yet (no order attributed in one arm)"
    )
    console.print(
        f"[bold]GMV per request, champion over the {control_label}: {headline}; oracle's true lift {truth}[/]",
        highlight=False,
        soft_wrap=True,
    )
    for name in ("ctr", "cvr"):
        x = s.metrics[name]
        t = f"{x.true_lift:+.1%}" if x.true_lift is not None else "unknown"
        value = (
            f"{x.lift:+.1%} (95% CI {x.ci_low:+.1%} .. {x.ci_high:+.1%})"
            if (x.model_extra or {}).get("estimable", True)
            else "not estimable yet"
        )
        console.print(f"{name.upper()}: {value}; true {t}", highlight=False, soft_wrap=True)
    excludes = estimable and m.ci_low > 0
    covers = estimable and m.true_lift is not None and m.ci_low <= m.true_lift <= m.ci_high
    console.print(
        f"interval excludes zero on the right: {'yes' if excludes else 'no'}; covers the true lift: "
        f"{'yes' if covers else 'no'}; {'readable' if s.readable else 'not readable yet'}: {s.readable_reason}",
        highlight=False,
        soft_wrap=True,
    )


if __name__ == "__main__":
    typer.run(main)
