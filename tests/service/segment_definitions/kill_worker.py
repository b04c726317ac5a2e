"""Run an evaluation in this process and stop in the middle (a test kills the process there).

python -m tests.service.segment_definitions.kill_worker <home> <marker file> <evaluation time> <definition id>...
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.segment_evaluation import run_evaluation
from segmentation_pipelines.settings import get_settings


def main() -> None:
    home, marker, when, *ids = sys.argv[1:]
    ctx = ServiceContext.create(get_settings(home=home), sandbox="prod")

    def progress(stage: str, _info: dict) -> None:
        if stage == "diff":  # the engine has run; nothing is published yet
            Path(marker).write_text("ready")
            time.sleep(600)

    run_evaluation(ctx, ids, dt.datetime.fromisoformat(when), progress=progress)


if __name__ == "__main__":
    main()
