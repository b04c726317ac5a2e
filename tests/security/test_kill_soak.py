"""kill -9 soak: ``SOAK_TRIALS`` (default 20) segment jobs killed mid-evaluation, in turn: the in-process run
worker, the daemon-launched step process, and the whole daemon (its process group: code server and run workers;
it is then restarted). After each kill every job must end terminal (FAILED, code SEGP-200501 for a lost worker)
within a bound, with the published memberships untouched; 0 jobs may stay non-terminal.

Slow (minutes): ``pytest -m slow tests/security/test_kill_soak.py -s`` prints one line per trial; results are
recorded in ``benchmarks/results/kill_soak.md``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
from service.segment_jobs.conftest import dagster_daemon
from service.segment_jobs.test_interrupts import REPO, evaluating_record, published, world  # noqa: F401 (fixture)

from segmentation_pipelines.service.reconcile import reconcile
from segmentation_pipelines.service.segment_jobs import SegmentJobsService

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("SOAK_TRIALS", "20"))
KINDS = ("run worker", "daemon step", "daemon")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
SETTLE_S = 240  # run monitoring notices a dead run worker within its polling interval after a daemon restart

RUN_IN_PROCESS = (
    "import sys; from segmentation_pipelines.service.context import ServiceContext;"
    "from segmentation_pipelines.service.segment_jobs import SegmentJobsService;"
    "from segmentation_pipelines.settings import get_settings;"
    "SegmentJobsService(ServiceContext.create(get_settings(), None, 'prod')).run_in_process(sys.argv[1])"
)


def test_kill_soak(world, tmp_path_factory):  # noqa: F811
    settings, jobs = world["settings"], world["services"].segment_jobs
    before = published(world)
    env = {**os.environ, "SEGMENTATION_HOME": str(settings.home), "PYTHONPATH": str(REPO)}
    daemons = contextlib.ExitStack()
    daemon = None
    results = []
    try:
        for trial in range(TRIALS):
            kind = KINDS[trial % len(KINDS)]
            job_id = jobs.create(world["slow_body"], evaluation_time=world["as_of"])["id"]
            started = time.monotonic()
            if kind == "run worker":
                worker = subprocess.Popen([sys.executable, "-c", RUN_IN_PROCESS, job_id], env=env, cwd=REPO)
                evaluating_record(world, job_id, alive=lambda w=worker: w.poll() is None, timeout=240)
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait(10)
            else:
                if daemon is None or daemon.poll() is not None:
                    daemon = daemons.enter_context(
                        dagster_daemon(settings, tmp_path_factory.mktemp("daemon"))
                    )
                _, pid = evaluating_record(
                    world, job_id, alive=lambda d=daemon: d.poll() is None, timeout=300
                )
                if kind == "daemon step":
                    os.kill(pid, signal.SIGKILL)
                else:  # the daemon and everything it started
                    os.killpg(daemon.pid, signal.SIGKILL)
                    daemon.wait(10)
                    with contextlib.suppress(ProcessLookupError):  # its group is dead: nothing left to stop
                        daemons.close()
                    daemon = daemons.enter_context(
                        dagster_daemon(settings, tmp_path_factory.mktemp("daemon"))
                    )
            killed = time.monotonic()
            while True:
                reconcile(settings, SegmentJobsService, grace_s=0)  # what the API's runner and the sensor do
                job = jobs.get(job_id)
                if job["status"] in TERMINAL or time.monotonic() - killed > SETTLE_S:
                    break
                time.sleep(1)
            codes = sorted({e.get("code") for e in job.get("errors") or []})
            results.append((trial, kind, job["status"], codes, killed - started, time.monotonic() - killed))
            print(
                f"trial {trial:2d} {kind:11s} -> {job['status']:9s} {','.join(map(str, codes)):12s} "
                f"killed after {killed - started:5.1f} s, terminal {time.monotonic() - killed:5.1f} s later",
                flush=True,
            )
            assert published(world) == before, f"trial {trial}: memberships changed"
    finally:
        daemons.close()
    stuck = [r for r in results if r[2] not in TERMINAL]
    assert not stuck, stuck
    assert all(r[2] == "FAILED" for r in results), results
    assert all(r[3] == ["SEGP-200501"] for r in results if r[1] != "daemon"), results
