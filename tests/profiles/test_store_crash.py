"""kill -9 during a store refresh: the previous store stays readable, and the next refresh completes (the
half-written folder is removed, the dead process's lock does not block) and equals a full rebuild."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.profiles.store import build_events_store, build_identity_graph_store

from .store_checks import TS, World, build_all, full_rebuild, snapshot

HELPER = Path(__file__).with_name("crash_build.py")
REPO = Path(__file__).resolve().parents[2]


def _start(layout: StoreLayout, part: str, world: World, tmp: Path) -> subprocess.Popen:
    inputs = tmp / f"inputs-{part.replace('/', '-')}.pickle"
    inputs.write_bytes(pickle.dumps((world.profiles, world.events, TS)))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.profiles.crash_build", str(layout.sandbox_root), part, str(inputs)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen, word: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(word):
            return line.strip()
        if not line and proc.poll() is not None:
            raise AssertionError(f"helper exited with {proc.returncode} before {word}")
    raise AssertionError(f"no {word} within {timeout} s")


def _read_all(layout: StoreLayout) -> tuple:
    return (
        duckdb.sql(f"SELECT count(*) FROM read_parquet('{layout.identities_path()}')").fetchall(),
        duckdb.sql(
            f"SELECT count(*) FROM read_parquet('{layout.events_path()}', union_by_name=true)"
        ).fetchall(),
        duckdb.sql(f"SELECT count(*) FROM read_parquet('{layout.profiles_path('ts')}')").fetchall(),
    )


@pytest.mark.parametrize("part", ["identity_graph", "events", "merged/ts"])
def test_kill_9_mid_build_keeps_the_old_store_and_the_next_build_completes(tmp_path, part):
    layout = StoreLayout(tmp_path / "sb")
    world = World(21, tmp_path, layout)
    world.profile_batch(new=10, updates=0, links=0)
    world.event_batch(known=30, unknown=3, linked=0)
    build_all(layout, world.profiles, world.events, [TS])
    before = snapshot(layout, [TS])
    world.profile_batch(new=3, updates=5, links=2)
    world.event_batch(known=10, unknown=2, linked=2)
    if part != "identity_graph":  # a downstream part is refreshed after the parts it reads
        build_identity_graph_store(layout, world.profiles, world.events)
    if part == "merged/ts":
        build_events_store(layout, world.events)
    parent = {"identity_graph": layout.identity_graph_dir(), "events": layout.events_dir()}.get(
        part, layout.merged_dir("ts")
    )
    published = os.readlink(parent / "current")

    before = snapshot(layout, [TS])
    proc = _start(layout, part, world, tmp_path)
    written = _wait_for(proc, "WRITTEN").split(" ", 1)[1]
    assert Path(written).is_dir() and Path(written).name != published
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # The store a reader sees is the previous one, whole.
    assert os.readlink(parent / "current") == published
    assert snapshot(layout, [TS]) == before
    _read_all(layout)

    # The next refresh takes the lock at once (the kernel released the dead process's flock), removes the
    # half-written folder and publishes a store equal to a full rebuild.
    started = time.monotonic()
    results = build_all(layout, world.profiles, world.events, [TS])
    assert time.monotonic() - started < 30
    assert not Path(written).exists()
    assert os.readlink(parent / "current") != published
    assert results[part]["mode"] == "incremental"
    full, _ = full_rebuild(tmp_path / "full", layout, world.profiles, world.events, [TS])
    assert snapshot(layout, [TS]) == snapshot(full, [TS])
    assert sorted(p.name for p in parent.glob("v-*")) == sorted({os.readlink(parent / "current"), published})


def test_kill_9_while_writing_leaves_no_visible_trace(tmp_path):
    """Killed at a random moment of a full build (not only before publishing): the store is the old one."""
    layout = StoreLayout(tmp_path / "sb")
    world = World(4, tmp_path, layout)
    world.profile_batch(new=20, updates=0, links=0)
    world.event_batch(known=60, unknown=5, linked=0)
    build_all(layout, world.profiles, world.events, [TS])
    before = snapshot(layout, [TS])
    (layout.events_dir() / "current" / "manifest.json").unlink()  # forces a full events build
    after_unlink = snapshot(layout, [TS])
    proc = _start(layout, "events", world, tmp_path)
    _wait_for(proc, "STARTED")
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert snapshot(layout, [TS]) == after_unlink == before
    assert build_all(layout, world.profiles, world.events, [TS])["events"]["mode"] == "full"
    full, _ = full_rebuild(tmp_path / "full", layout, world.profiles, world.events, [TS])
    assert snapshot(layout, [TS]) == snapshot(full, [TS])


def test_two_concurrent_refreshes_serialise_and_keep_every_batch(tmp_path):
    """The second build waits for the first one's lock, then re-reads the manifest and builds on its result."""
    layout = StoreLayout(tmp_path / "sb")
    world = World(9, tmp_path, layout)
    world.profile_batch(new=8, updates=0, links=0)
    world.event_batch(known=20, unknown=2, linked=0)
    build_all(layout, world.profiles, world.events, [TS])
    world.profile_batch(new=2, updates=3, links=1)
    first = _start(layout, "identity_graph", world, tmp_path)  # holds the lock, waiting before it publishes
    _wait_for(first, "WRITTEN")
    world.event_batch(known=5, unknown=1, linked=1)
    (tmp_path / "second").mkdir()
    second = _start(layout, "identity_graph", world, tmp_path / "second")
    _wait_for(second, "STARTED")
    time.sleep(1.0)
    assert second.poll() is None  # blocked on the lock, not building from the old manifest
    first.stdin.write("\n")
    first.stdin.flush()
    assert first.wait(timeout=60) == 0
    after_first = os.readlink(layout.identity_graph_dir() / "current")
    _wait_for(second, "WRITTEN")
    second.stdin.write("\n")
    second.stdin.flush()
    assert second.wait(timeout=60) == 0
    manifest = json.loads((layout.identity_graph_dir() / "current" / "manifest.json").read_text())
    assert manifest["batches"] == sorted(b.batch_id for b in [*world.profiles, *world.events])
    assert manifest["mode"] == "incremental" and manifest["base"] == after_first
    build_all(layout, world.profiles, world.events, [TS])
    full, _ = full_rebuild(tmp_path / "full", layout, world.profiles, world.events, [TS])
    assert snapshot(layout, [TS]) == snapshot(full, [TS])
