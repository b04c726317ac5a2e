"""The landing area: the one place a remote caller's files are read from.

Each (org, sandbox) has a landing folder, ``<landing_root>/<org>/<sandbox>``. Files reach it by upload (the Batch
Ingestion API paths) or by an operator copying them in. A path a remote caller names is resolved against that folder
after following symlinks and ``..``; anything that does not land inside it, or is not there, is refused with one and
the same message, so a refusal tells nothing about the server's file system.

In-process (the Python client on the caller's own machine) a local path is the caller's own file and stays allowed:
``confined=False``. Relative paths always resolve against the landing folder.
"""

from __future__ import annotations

from pathlib import Path

from segmentation_pipelines.errors import BadRequest


def safe_org(org_id: str) -> str:
    """An org id as a folder name (the same rule for data and landing folders)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in org_id)


def landing_dir(landing_root: Path, org_id: str, sandbox: str) -> Path:
    return Path(landing_root) / safe_org(org_id) / sandbox


def _refused(raw: str, what: str, kind: str) -> BadRequest:
    return BadRequest(
        f"{what}: '{str(raw)[:200]}' is not a {kind} in this sandbox's landing area; upload it first "
        "(POST /data/foundation/import/batches) or ask an operator to copy it into the landing folder."
    )


def resolve_path(raw: str, landing: Path, *, confined: bool, kind: str = "file", what: str = "path") -> Path:
    """The file (``kind='file'``) or folder (``kind='folder'``) ``raw`` names, resolved and checked.

    ``confined`` callers (REST) may only name what lies inside ``landing``; the message is the same whether the
    path is missing, outside, a symlink out, or of the wrong kind.
    """
    text = str(raw)
    if not text or "\x00" in text:
        raise _refused(text, what, kind)
    given = Path(text).expanduser()
    base = Path(landing).resolve()
    candidate = given if given.is_absolute() else base / given
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise _refused(text, what, kind) from None
    if confined and not resolved.is_relative_to(base):
        raise _refused(text, what, kind)
    ok = resolved.is_file() if kind == "file" else resolved.is_dir()
    if not ok:
        raise _refused(text, what, kind)
    return resolved


def files_under(folder: Path, suffixes: tuple[str, ...], landing: Path, *, confined: bool) -> list[Path]:
    """The files of ``folder`` (recursively, sorted, hidden files skipped) ending in one of ``suffixes``; when
    ``confined``, symlinks leading out of ``landing`` are skipped."""
    base = Path(landing).resolve()
    out = []
    for path in sorted(Path(folder).rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if not path.name.lower().endswith(suffixes):
            continue
        resolved = path.resolve()
        if not resolved.is_file() or (confined and not resolved.is_relative_to(base)):
            continue
        out.append(resolved)
    return out
