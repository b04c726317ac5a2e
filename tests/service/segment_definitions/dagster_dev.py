"""``segmentation-pipelines dev`` (or ``serve``) as a user starts it (API, Dagster webserver and daemon), for the tests that go
through Dagster's own GraphQL API: yields the API's URL and the webserver's once both answer and every daemon is
healthy."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

SCRIPT = str(Path(sys.executable).with_name("segmentation-pipelines"))
DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _daemons_healthy(dagster_url: str) -> bool:
    try:
        answer = httpx.post(f"{dagster_url}/graphql", json={"query": DAEMON_HEALTH}, timeout=5).json()
    except (httpx.TransportError, ValueError):
        return False
    statuses = (
        answer.get("data", {}).get("instance", {}).get("daemonHealth", {}).get("allDaemonStatuses") or []
    )
    return bool(statuses) and all(s["healthy"] for s in statuses)


@contextmanager
def dagster_dev(home: Path, startup_s: float = 240, command: str = "dev") -> Iterator[tuple[str, str]]:
    """``command`` ``dev`` (API + Dagster) or ``serve`` (the API alone: the second URL answers nothing)."""
    port, dagster_port = free_port(), free_port()
    args = [SCRIPT, command, "--port", str(port), "--home", str(home)]
    args += ["--dagster-port", str(dagster_port)] if command == "dev" else []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENTATION_", "DAGSTER_"))}
    log_path = home.parent / f"{command}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        url, dagster_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dagster_port}"
        deadline = time.monotonic() + startup_s
        try:
            while True:
                assert process.poll() is None, log_path.read_text()[-5000:]
                try:
                    up = httpx.get(f"{url}/health", timeout=2).status_code == 200
                except httpx.TransportError:
                    up = False
                if up and (command != "dev" or _daemons_healthy(dagster_url)):
                    break
                assert time.monotonic() < deadline, f"dev did not come up:\n{log_path.read_text()[-5000:]}"
                time.sleep(0.5)
            yield url, dagster_url
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def graphql(dagster_url: str, query: str, variables: dict | None = None) -> dict:
    """Dagster's GraphQL API (what the UI calls); raises on GraphQL errors."""
    answer = httpx.post(
        f"{dagster_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=120
    ).json()
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


def wait_for(predicate, timeout: float, what: str, every: float = 1.0):
    """``predicate()`` once it is truthy (polled every ``every`` s); fails after ``timeout`` s naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")
