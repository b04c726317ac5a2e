"""Plain `dagster dev` in the repository root starts on the top-level dagster.yaml (acceptance of the issue)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from running import free_port

from segmentation_pipelines.dagster_home import PROJECT_ROOT

INSTANCE_INFO = "{ instance { info } }"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_dagster_dev_in_repo_root_uses_top_level_dagster_yaml():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "DAGSTER_PG_URL")}
    dagster = str(Path(sys.executable).with_name("dagster"))
    process = subprocess.Popen(
        [dagster, "dev", "-w", "workspace.yaml", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        info = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/graphql", json={"query": INSTANCE_INFO}, timeout=5
                )
                info = answer.json()["data"]["instance"]["info"]
                break
            except (httpx.TransportError, ValueError, KeyError, TypeError):
                time.sleep(0.5)
        assert info is not None, "dagster dev did not answer"
        # The settings of the top-level dagster.yaml are in force (a temporary folder holds the storage).
        assert "max_concurrent_runs: 4" in info, info
        assert "cancel_timeout_seconds: 180" in info, info
        assert "SqliteRunStorage" in info or "sqlite" in info.lower(), info
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
