"""The walkthrough of ``docs/getting-started.md`` runs as written, and prints what its comments say.

Every ``bash`` and ``python`` block of the section "From your own files to audiences" runs in order in one empty
folder (bash with ``bash -euo pipefail``, the REST API on a free port instead of 8080). A ``# <text>`` comment at the
end of a line that prints (or alone on the line after a ``print``) is that line's expected output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from running import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"
SECTION = "## From your own files to audiences"
BIN = str(Path(sys.executable).parent)


def blocks() -> list[tuple[str, str]]:
    text = DOC.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end > 0 else None]
    return re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.S)


def expected_outputs(code: str, language: str) -> list[str]:
    out, lines = [], code.splitlines()
    for i, line in enumerate(lines):
        prints = "print(" in line if language == "python" else ("| field" in line or line.startswith("curl"))
        if not prints:
            continue
        inline = re.search(r"\)\s+#\s+(.*)$" if language == "python" else r"\s#\s+(.*)$", line)
        if inline:
            out.append(inline.group(1).strip())
        elif language == "python" and i + 1 < len(lines) and lines[i + 1].startswith("# "):
            out.append(lines[i + 1][2:].strip())
    return out


def test_getting_started_walkthrough_runs_as_written(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENTATION_", "DAGSTER_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    found = blocks()
    assert [lang for lang, _ in found] == ["bash", "python", "bash"], "the walkthrough's blocks changed"
    port = str(free_port())
    for language, code in found:
        if language == "bash":
            script = "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + code.replace("8080", port)
            command = ["bash", "-euo", "pipefail", "-c", script]
        else:
            command = [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{language} block failed:\n{done.stdout}\n{done.stderr[-4000:]}"
        printed = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        assert printed == expected_outputs(code, language), (language, done.stderr[-2000:])
