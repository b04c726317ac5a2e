"""``segmentation-pipelines serve``: the REST API (uvicorn)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on")
@click.option(
    "--home", type=click.Path(path_type=Path), default=None, help="Home folder (default: SEGMENTATION_HOME)"
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
def serve(host: str, port: int, home: Path | None, log_level: str) -> None:
    """Serve the AEP-compatible REST API (/data/core/ups, /data/core/ais, /health)."""
    # Imported when the command runs: keeps the CLI's start fast.
    import uvicorn

    from segmentation_pipelines.api import create_app
    from segmentation_pipelines.settings import get_settings

    settings = get_settings(home=home)
    settings.ensure_home()
    click.echo(f"REST API on http://{host}:{port} (home {settings.home}); docs at http://{host}:{port}/docs")
    if settings.runner != "off":
        click.echo(
            "Segment jobs and profile-store refreshes run in this process while no Dagster daemon runs "
            f"(SEGMENTATION_RUNNER={settings.runner})."
        )
    uvicorn.run(create_app(settings, run_requests=True), host=host, port=port, log_level=log_level)
