"""The Python walkthrough of ``docs/external-audiences.md`` runs as written and prints what its comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "external-audiences.md"


def test_walkthrough_runs_as_written(tmp_path):
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    expected = []
    lines = code.splitlines()
    for i, line in enumerate(lines):
        if "print(" not in line:
            continue
        inline = re.search(r"\)\s+#\s+(.*)$", line)
        if inline:
            expected.append(inline.group(1).strip())
        j = i + 1
        while j < len(lines) and lines[j].startswith("# "):
            expected.append(lines[j][2:].strip())
            j += 1
    env = {"PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line.strip() for line in done.stdout.strip().splitlines()] == expected
