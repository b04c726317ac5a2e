"""Where a segment job's evaluation and diff spend their time, statement by statement (issue 18).

    .venv/bin/python benchmarks/segment_job_phases.py --work DIR [--round 2] [--definitions 100] [--engine duckdb]

On a home made by ``benchmarks/segment_job.py --work DIR`` (its definitions created, its rounds evaluated), re-runs
round ``--round``'s evaluation outside any job: the engine (its own timings per kind of statement), then the
membership diff against the evaluation before that round, with every diff statement timed (first line of its SQL
and seconds). Nothing is published: the diff's staging folder is removed. Prints; records nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import time
from pathlib import Path

from evaluation import DATA, NOW
from segment_job import definitions, ensure_definitions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--round", type=int, default=2)
    ap.add_argument("--definitions", type=int, default=100)
    ap.add_argument("--engine", choices=("duckdb", "polars"), default="duckdb")
    args = ap.parse_args()
    os.environ["SEGMENTATION_ENGINE"] = args.engine

    from segmentation_pipelines import SegmentationClient, engine
    from segmentation_pipelines.engine import memberships
    from segmentation_pipelines.profiles.layout import StoreLayout, pinned
    from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
    from segmentation_pipelines.service.segment_pql import SegmentPql, profile_schema
    from segmentation_pipelines.timeutil import to_ms

    home = args.work / f"p{args.profiles}-e{args.events}" / "segment-job" / "home"
    assert DATA  # the data the home was made from (benchmarks/.data)
    when = NOW + dt.timedelta(days=args.round - 1)
    with SegmentationClient(home=home) as client:
        ids = list(ensure_definitions(client, definitions(args.definitions)).values())
        ctx = client.ctx
        policy = client.segment_definitions.get(ids[0])["mergePolicyId"]
        layout = StoreLayout(ctx.sandbox_root)
        profiles = pinned(layout.profiles_path(policy))
        events = str(Path(layout.events_path()).parent.resolve() / "*.parquet")
        schema = profile_schema(ctx)
        checker = SegmentPql(ctx)
        defs = [
            engine.EngineDefinition(
                i,
                checker.check(
                    client.segment_definitions.get(i)["expression"],
                    self_id=i,
                    schema=schema,
                    compile_engines=False,
                ).checked,
            )
            for i in ids
        ]
        work = layout.tmp_dir() / "phases"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        t = time.perf_counter()
        numbers = None
        if hasattr(memberships, "profile_numbers") and args.engine in ("duckdb", "polars"):  # as the job does
            numbers = memberships.profile_numbers(
                layout.memberships_dir(), profiles, work / "numbers.parquet"
            )
            print(f"profile numbers {time.perf_counter() - t:.2f} s")
        t = time.perf_counter()
        result = engine.evaluate(
            engine.EvaluationRequest(
                definitions=defs,
                profiles_path=profiles,
                events_path=events,
                evaluation_time=when,
                output_path=work / "qualified.parquet",
                schema=schema,
                engine=args.engine,
                temp_dir=work / "spill",
                **({"profile_numbers": numbers} if numbers is not None else {}),
            )
        )
        print(f"engine {time.perf_counter() - t:.2f} s", {k: round(v, 2) for k, v in result.timings.items()})

        timed = memberships.run_interruptible

        def run_timed(work_fn, interrupt, should_cancel):
            started = time.perf_counter()
            try:
                return timed(work_fn, interrupt, should_cancel)
            finally:
                sql = work_fn.__closure__ and next(
                    (c.cell_contents for c in work_fn.__closure__ if isinstance(c.cell_contents, str)), ""
                )
                line = " ".join(str(sql or "").split())[:110]
                print(f"  {time.perf_counter() - started:6.2f} s  {line}")

        memberships.run_interruptible = run_timed
        previous = {
            a: e.path for a, e in AudienceEvaluations(ctx).latest_for(ids, before_ms=to_ms(when)).items()
        }
        t = time.perf_counter()
        diff = memberships.diff_memberships(
            qualified_path=result.output_path,
            audience_ids=ids,
            previous=previous,
            evaluation_time=when,
            profiles_paths=dict.fromkeys(ids, profiles),
            staging_root=layout.memberships_dir(),
        )
        print(f"diff {time.perf_counter() - t:.2f} s", diff.timings_ms)
        shutil.rmtree(diff.staging, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
