"""Finding 6 (part): ``memberships/.staging-*`` and ``tmp/evaluation-*`` left by a killed run were never cleaned.
They are now removed by the next evaluation of the sandbox and when the API starts, unless a live process holds
the sandbox's work lock (then only folders older than a day go)."""

from __future__ import annotations

import subprocess
import sys
import time

from fastapi.testclient import TestClient

from segmentation_pipelines.api import create_app

SANDBOX = "segmentation_AdobeOrg/prod"


def _litter(settings):
    root = settings.data_root / SANDBOX
    folders = [root / "tmp" / "evaluation-killed", root / "memberships" / ".staging-killed"]
    for folder in folders:  # what a run killed with -9 leaves behind
        (folder / "spill").mkdir(parents=True)
        (folder / "spill" / "x.parquet").write_bytes(b"x" * 100)
    return folders


def test_startup_removes_a_killed_runs_work_folders(settings):
    folders = _litter(settings)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
    assert not any(f.exists() for f in folders)


def test_folders_of_a_live_run_are_kept(settings):
    folders = _litter(settings)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from segmentation_pipelines.profiles.layout import StoreLayout; "
            "from segmentation_pipelines.service.segment_evaluation import work_lock\n"
            f"with work_lock(StoreLayout({str(settings.data_root / SANDBOX)!r})):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        with TestClient(create_app(settings)) as client:
            assert client.get("/health").status_code == 200
        assert all(f.exists() for f in folders)  # a live process may own them
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    with TestClient(create_app(settings)) as client:  # its holder died: litter now
        assert client.get("/health").status_code == 200
    assert not any(f.exists() for f in folders)
