"""The command line: help text, `demo` preparing a home folder, `serve` and `dev` starting and stopping cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from running import free_port

from segmentation_pipelines.cli import main
from segmentation_pipelines.dagster_home import DEFAULT_CONFIG

SCRIPT = str(Path(sys.executable).with_name("segmentation-pipelines"))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENTATION_", "DAGSTER_"))}
    return {**env, **extra}


def _wait_until_up(url: str, process: subprocess.Popen, seconds: float = 120) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}: {process.stdout.read()}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not come up")


def _is_down(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.TransportError:
        return True
    return False


def test_help_lists_the_commands_with_their_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("serve", "dev", "demo"):
        line = next(ln for ln in result.output.splitlines() if ln.strip().startswith(command + " "))
        assert len(line.split(None, 1)[1]) > 10, line
    for command in ("serve", "dev", "demo"):
        sub = CliRunner().invoke(main, [command, "--help"])
        assert sub.exit_code == 0 and "--home" in sub.output


def test_demo_prepares_the_home_folder(tmp_path):
    home = tmp_path / "home"
    result = subprocess.run(
        [SCRIPT, "demo", "--home", str(home), "--profiles", "200", "--events", "2000"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (home / "catalog.db").is_file()
    assert (home / "dagster" / "dagster.yaml").read_text() == DEFAULT_CONFIG.read_text()
    assert str(home) in result.stdout and "DAGSTER_HOME" in result.stdout


def test_serve_answers_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [SCRIPT, "serve", "--port", str(port), "--home", str(tmp_path / "home")],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        response = _wait_until_up(f"http://127.0.0.1:{port}/health", process, seconds=60)
        assert response.status_code == 200 and response.json()["status"] == "ok"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "SEGMENTATION_API_TOKENS is not set" in output


def test_serve_requires_tokens_when_set(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [SCRIPT, "serve", "--port", str(port), "--home", str(tmp_path / "home")],
        env=_env(SEGMENTATION_API_TOKENS="abc"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/health", process, seconds=60)
        denied = httpx.get(f"http://127.0.0.1:{port}/data/foundation/catalog/dataSets")
        assert denied.status_code == 401 and denied.json()["status"] == 401
        allowed = httpx.get(
            f"http://127.0.0.1:{port}/data/foundation/catalog/dataSets",
            headers={"Authorization": "Bearer abc"},
        )
        assert allowed.status_code == 200, allowed.text
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_dev_runs_dagster_and_the_api_and_stops_both(tmp_path):
    api_port, dagster_port = free_port(), free_port()
    home = tmp_path / "home"
    process = subprocess.Popen(
        [SCRIPT, "dev", "--home", str(home), "--port", str(api_port), "--dagster-port", str(dagster_port)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    api, dagster = f"http://127.0.0.1:{api_port}/health", f"http://127.0.0.1:{dagster_port}/server_info"
    try:
        assert _wait_until_up(api, process).status_code == 200
        info = _wait_until_up(dagster, process).json()
        assert info["dagster_version"] == "1.13.27"
        assert (home / "dagster" / "dagster.yaml").is_file()
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert _is_down(api) and _is_down(dagster)
    # Dagster kept its state in the home folder, not in a temporary directory.
    assert (home / "dagster" / "history").is_dir() or (home / "dagster" / "storage").is_dir(), output
