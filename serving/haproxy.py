"""HAProxy in front of the ranking service: load shedding on cores the scoring does not use.

Over capacity, the service's own admission control (serving/guard.py) can only refuse a request after its worker
has read and parsed it; on a saturated core that parsing is where the queue forms (docs/benchmarks.md, "The
arrival stamp"). Production sheds in front, in a load balancer with its own cores. This module renders the
HAProxy configuration that does that, and runs HAProxy for the benchmark and for `make serve-haproxy`:

- at most `max_conn` /rank requests reach the service at once (`server ... maxconn`); the rest wait in HAProxy's
  queue, which costs the service nothing;
- a request that waited `queue_timeout_ms` there is answered 503 with `Retry-After` by HAProxy
  (`timeout queue`), as the service itself answers an over-capacity request (the documented 503 of shedding);
- HAProxy's own counters (requests, 503s, queue length) are on `/metrics` of a second port, in Prometheus form,
  beside the service's.

HAProxy is Debian's package (`make install-haproxy`, or `apt-get install haproxy`); the embedded default never
needs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

HAPROXY = "haproxy"


class ProxyConfig(BaseModel):
    """What HAProxy is told; every bound is checked before a line of configuration is written."""

    model_config = ConfigDict(frozen=True)

    backend: str = Field(description="host:port of the ranking service.")
    port: int = Field(ge=1, le=65535, description="Port HAProxy listens on for /rank and the rest.")
    stats_port: int = Field(ge=1, le=65535, description="Port of HAProxy's Prometheus /metrics.")
    max_conn: int = Field(
        default=2, ge=1, le=4096, description="Requests in the service at once, all workers (one per core)."
    )
    queue_timeout_ms: int = Field(default=5, ge=1, le=60_000, description="Wait in HAProxy's queue before a 503.")
    retry_after_seconds: int = Field(default=1, ge=1, le=3600, description="Retry-After of a shed request.")
    threads: int = Field(default=1, ge=1, le=64, description="HAProxy threads (one core is plenty here).")
    bind: str = Field(default="127.0.0.1", description="Address HAProxy listens on.")


def render(cfg: ProxyConfig) -> str:
    """The haproxy.cfg for `cfg` (check it with `haproxy -c -f <file>`)."""
    return f"""# rendered by serving/haproxy.py: shed over capacity in front of the ranking service
global
    maxconn 4000
    nbthread {cfg.threads}

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # the shedding rule: a request that waited this long for one of the service's slots is answered 503
    timeout queue {cfg.queue_timeout_ms}ms

frontend ranking
    bind {cfg.bind}:{cfg.port}
    default_backend shoprank
    # HAProxy's own 503 (queue timeout, no server) says when to come back, as the service's does
    http-after-response set-header Retry-After {cfg.retry_after_seconds} if {{ status 503 }}

backend shoprank
    server ranker {cfg.backend} maxconn {cfg.max_conn}

frontend stats
    bind {cfg.bind}:{cfg.stats_port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
"""


def haproxy_binary() -> str:
    """The HAProxy executable, or a one-line error saying how to install it."""
    found = shutil.which(HAPROXY) or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)), None
    )
    if not found:
        raise FileNotFoundError("haproxy not found: `make install-haproxy` (Debian: apt-get install haproxy)")
    return found


def check(cfg: ProxyConfig, path: Path) -> None:
    """Write the configuration to `path` and have HAProxy validate it (raises with HAProxy's own message)."""
    path.write_text(render(cfg))
    out = subprocess.run([haproxy_binary(), "-c", "-f", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        raise ValueError(f"haproxy rejected {path}: {(out.stdout + out.stderr).strip()}")


def backend_of(url: str) -> str:
    """`http://127.0.0.1:3000` -> `127.0.0.1:3000`."""
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise ValueError(f"{url!r} is not a URL with a host and a port")
    return f"{parts.hostname}:{parts.port}"


@contextmanager
def running_haproxy(cfg: ProxyConfig, cpus: Collection[int] | None = None, timeout: float = 20.0) -> Iterator[str]:
    """Run HAProxy with `cfg` in the foreground until the block ends; yields its base URL once it answers.

    `cpus`: the cores HAProxy may run on (a benchmark keeps it off the service's, as another box would)."""
    binary = haproxy_binary()
    with tempfile.TemporaryDirectory(prefix="shoprank-haproxy-") as tmp:
        path = Path(tmp) / "haproxy.cfg"
        check(cfg, path)
        log_path = Path(tmp) / "haproxy.log"
        with open(log_path, "wb") as log:
            pin = (lambda: os.sched_setaffinity(0, set(cpus))) if cpus else None
            proc = subprocess.Popen(
                [binary, "-db", "-f", str(path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pin,  # noqa: PLW1509 - only sched_setaffinity before exec
            )
        host = "127.0.0.1" if cfg.bind in ("0.0.0.0", "") else cfg.bind
        base = f"http://{host}:{cfg.port}"
        try:
            _wait_listening(f"http://{host}:{cfg.stats_port}/metrics", proc, timeout, log_path)
            yield base
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _wait_listening(url: str, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with {proc.returncode}: {log_path.read_text().strip()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"haproxy did not answer {url} within {timeout:.0f}s")


def counters(stats_url: str) -> dict[str, float]:
    """HAProxy's counters of the ranking backend from its Prometheus page, e.g. `http_requests_total`,
    `http_responses_total{code="5xx"}` (the 503s of its queue timeout are there) and `max_queue`."""
    text = httpx.get(f"{stats_url}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("haproxy_backend_") and 'proxy="shoprank"' in line:
            name, _, value = line.rpartition(" ")
            key = name.removeprefix("haproxy_backend_").replace('proxy="shoprank",', "")
            key = key.replace('{proxy="shoprank"}', "")
            out[key] = float(value)
    return out


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


def _config(**fields: object) -> ProxyConfig:
    try:
        return ProxyConfig.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise typer.BadParameter(f"{err['loc'][0]}={err.get('input')!r}: {err['msg']}") from None


@app.command()
def config(
    backend: str = typer.Option("127.0.0.1:3001", help="host:port of `bentoml serve`."),
    port: int = typer.Option(3000, help="Port HAProxy listens on."),
    stats_port: int = typer.Option(8405, help="Port of HAProxy's Prometheus /metrics."),
    max_conn: int = typer.Option(2, help="Requests in the service at once (one per core of the service)."),
    queue_ms: int = typer.Option(5, help="Wait in HAProxy's queue before a 503."),
    bind: str = typer.Option("0.0.0.0", help="Address HAProxy listens on."),
) -> None:
    """Print the haproxy.cfg (for a deployment's own HAProxy)."""
    cfg = _config(
        backend=backend, port=port, stats_port=stats_port, max_conn=max_conn, queue_timeout_ms=queue_ms, bind=bind
    )
    typer.echo(render(cfg), nl=False)


@app.command()
def serve(
    port: int = typer.Option(3000, help="Port HAProxy listens on (the service gets a free port behind it)."),
    stats_port: int = typer.Option(8405, help="Port of HAProxy's Prometheus /metrics."),
    max_conn: int = typer.Option(0, help="Requests in the service at once (0: SHOPRANK_WORKERS, one per core)."),
    queue_ms: int = typer.Option(5, help="Wait in HAProxy's queue before a 503."),
) -> None:
    """Serve the champion behind HAProxy until Ctrl-C: over capacity HAProxy answers 503 with Retry-After."""
    from platform_common.settings import get_settings
    from serving.launcher import running_service
    from serving.settings import load

    served = load()
    try:
        haproxy_binary()
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc)) from None
    cfg_fields = {"port": port, "stats_port": stats_port, "queue_timeout_ms": queue_ms, "bind": "0.0.0.0"}
    cfg_fields |= {"max_conn": max_conn or served.workers, "retry_after_seconds": served.retry_after_seconds}
    _config(backend="127.0.0.1:1", **cfg_fields)  # bad options fail before the service starts
    typer.echo("starting the ranking service behind HAProxy (loading the champion and the snapshot)")
    with running_service(get_settings(), timeout=900) as url:
        cfg = _config(backend=backend_of(url), **cfg_fields)
        with running_haproxy(cfg) as front:
            typer.echo(
                f"/rank on {front} (service {url}, {cfg.max_conn} at once, 503 after {cfg.queue_timeout_ms} ms "
                f"queued); HAProxy metrics on :{cfg.stats_port}/metrics. Ctrl-C stops both."
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                typer.echo("stopping")


if __name__ == "__main__":
    app()
