"""Time every DuckDB statement (over 0.2 s) of the profile store's full builds, on a home made by
``benchmarks/profile_store.py`` (for example a copy made with its ``--data`` and ``--keep``):

    flock /tmp/sp-bench.lock .venv/bin/python benchmarks/profile_store_statements.py HOME identity events merge

Prints each slow statement (its first 150 characters) and each part's result; the parts run in this order.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from segmentation_pipelines import duck  # noqa: E402

_connect = duck.connect


class _Timed:
    def __init__(self, con):
        self._con = con

    def execute(self, sql, *args):
        started = time.perf_counter()
        result = self._con.execute(sql, *args)
        seconds = time.perf_counter() - started
        if seconds > 0.2:
            print(f"    {seconds:7.2f} s  {' '.join(sql.split())[:150]}", flush=True)
        return result

    def __getattr__(self, name):
        return getattr(self._con, name)


def main(argv: list[str]) -> int:
    duck.connect = lambda *a, **k: _Timed(_connect(*a, **k))
    import profile_store as ps

    home, parts = argv[0], argv[1:]
    phases = {
        "identity": lambda: ps.phase_identity(home),
        "events": lambda: ps.phase_events(home),
        "merge": lambda: ps.phase_merge(home, False),
    }
    for part in parts:
        started = time.perf_counter()
        result = phases[part]()
        print(part, round(time.perf_counter() - started, 1), result, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
