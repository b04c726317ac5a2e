"""``segmentation-pipelines`` commands started as a user starts them, for the tests that go through a real process:
free ports, the environment a user's shell would have, waiting until the API (and for ``dev``, every Dagster daemon)
answers, and stopping with Ctrl-C (then kill). One home for what the end-to-end, CLI, export, search and UI tests
all need."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import httpx

SCRIPT = str(Path(sys.executable).with_name("segmentation-pipelines"))
DAEMON_HEALTH = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def user_env(**extra: str) -> dict[str, str]:
    """This process's environment without the project's and Dagster's variables (the test run's own settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENTATION_", "DAGSTER_"))}
    return {**env, **extra}


def wait_for(predicate: Callable[[], T], timeout: float, what: str, every: float = 1.0) -> T:
    """``predicate()`` once it is truthy (polled every ``every`` s); fails after ``timeout`` s naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def graphql(dagster_url: str, query: str, variables: dict | None = None) -> dict:
    """Dagster's GraphQL API (what the UI calls); raises on GraphQL errors."""
    answer = httpx.post(
        f"{dagster_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=120
    ).json()
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


def daemons_healthy(dagster_url: str) -> bool:
    """Dagster's own GraphQL API: is every daemon (sensors and the run queue included) healthy?"""
    try:
        answer = httpx.post(f"{dagster_url}/graphql", json={"query": DAEMON_HEALTH}, timeout=5).json()
    except (httpx.TransportError, ValueError):
        return False
    statuses = (answer.get("data") or {}).get("instance", {}).get("daemonHealth", {}).get("allDaemonStatuses")
    return bool(statuses) and all(s["healthy"] for s in statuses)


def stop(process: subprocess.Popen, timeout: float = 60) -> None:
    """Ctrl-C, as a user stops it; killed if it has not exited within ``timeout`` s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Server:
    """A started ``serve``/``dev``: the API's URL, Dagster's (answers nothing under ``serve``), the process."""

    url: str
    dagster_url: str
    process: subprocess.Popen
    log: IO[str]
    log_path: Path


def start(home: Path, command: str = "serve", startup_s: float = 180, env: dict | None = None) -> Server:
    """``segmentation-pipelines serve`` (or ``dev``) on free ports, returned once the API answers (for ``dev``,
    once every Dagster daemon is healthy too). Stop it with :func:`stop` (``server.process``)."""
    port, dagster_port = free_port(), free_port()
    args = [SCRIPT, command, "--port", str(port), "--home", str(home)]
    args += ["--dagster-port", str(dagster_port)] if command == "dev" else []
    log_path = home.parent / f"{command}-{port}.log"
    log = log_path.open("w")
    process = subprocess.Popen(args, env=env or user_env(), stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dagster_port}", process, log, log_path)

    def up() -> bool:
        assert process.poll() is None, log_path.read_text()[-5000:]
        try:
            answers = httpx.get(f"{server.url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False
        return answers and (command != "dev" or daemons_healthy(server.dagster_url))

    try:
        wait_for(up, startup_s, f"`{command}` to come up ({log_path})", every=0.3)
    except BaseException:
        stop(process)
        log.close()
        raise
    return server


@contextmanager
def serving(home: Path, command: str = "serve", startup_s: float = 180) -> Iterator[tuple[str, str]]:
    """:func:`start` for the length of a ``with`` block; yields the API's URL and Dagster's."""
    server = start(home, command, startup_s)
    try:
        yield server.url, server.dagster_url
    finally:
        stop(server.process)
        server.log.close()
