"""``segmentation-pipelines dev``: ``dagster dev`` on this code location and the REST API, together.

Both run as child processes sharing one home folder and one Dagster instance (``DAGSTER_HOME`` =
``$SEGMENTATION_HOME/dagster`` holding the selected ``dagster.yaml``). Ctrl-C (or either child exiting) stops both.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

STOP_GRACE_SECONDS = 20


def _dagster_executable() -> str:
    beside_python = Path(sys.executable).with_name("dagster")
    return str(beside_python) if beside_python.exists() else (shutil.which("dagster") or "dagster")


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface for both servers")
@click.option("--port", default=8080, show_default=True, type=int, help="REST API port")
@click.option("--dagster-port", default=3000, show_default=True, type=int, help="Dagster UI port")
@click.option(
    "--home", type=click.Path(path_type=Path), default=None, help="Home folder (default: SEGMENTATION_HOME)"
)
def dev(host: str, port: int, dagster_port: int, home: Path | None) -> None:
    """Run the Dagster UI + daemon (dagster dev) and the REST API together; Ctrl-C stops both."""
    # Imported when the command runs: keeps the CLI's start fast.
    from segmentation_pipelines.dagster_home import PROJECT_ROOT, dagster_env
    from segmentation_pipelines.settings import get_settings

    settings = get_settings(home=home)
    settings.ensure_home()
    try:
        env = dagster_env(settings)
    except (ValueError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from error
    env.setdefault("SEGMENTATION_DAGSTER_URL", f"http://{host}:{dagster_port}")
    # The daemon sees definitions created over REST only when it next refreshes its workspace (every 60 s), so
    # its launcher sensor would hold a new job that long: the API runs the jobs it is given at once instead
    # (docs/decisions/user-path.md); the daemon keeps schedules, store refreshes and reconciliation.
    env.setdefault("SEGMENTATION_RUNNER", "on")
    workspace = PROJECT_ROOT / "workspace.yaml"
    dagster_cmd = [_dagster_executable(), "dev", "-w", str(workspace), "-h", host, "-p", str(dagster_port)]
    api_cmd = [
        sys.executable,
        "-c",
        "from segmentation_pipelines.cli import main; main()",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--home",
        str(settings.home),
    ]
    click.echo(f"home:        {settings.home}")
    click.echo(
        f"DAGSTER_HOME {env['DAGSTER_HOME']} ({'PostgreSQL' if os.environ.get('DAGSTER_PG_URL') else 'SQLite'})"
    )
    click.echo(f"Dagster UI:  http://{host}:{dagster_port}")
    click.echo(f"REST API:    http://{host}:{port}  (docs: /docs)")
    processes = [
        subprocess.Popen(dagster_cmd, env=env, cwd=PROJECT_ROOT),
        subprocess.Popen(api_cmd, env=env, cwd=PROJECT_ROOT),
    ]
    # SIGTERM (e.g. from a supervisor) stops both, like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    exit_code = 0
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        exited = next(p for p in processes if p.poll() is not None)
        exit_code = exited.returncode or 0
        click.echo(
            f"{Path(exited.args[0]).name} exited with code {exited.returncode}; stopping the other.", err=True
        )
    except KeyboardInterrupt:
        click.echo("Stopping Dagster and the REST API...", err=True)
    finally:
        _stop(processes)
    sys.exit(exit_code)
