"""What a published store version was built from (``manifest.json``), and the lock that serialises its builders.

A version folder's manifest is written last, just before the folder is published, so a folder with a manifest is
complete. ``stale_parts`` and the incremental builds compare manifests with their inputs; an unreadable or
missing manifest means "unknown", which every caller treats as "rebuild in full".
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

MANIFEST = "manifest.json"
LOCK = ".lock"
FORMAT = 1  # bump when a manifest's meaning changes: older manifests then read as unknown (full rebuild)


def current_version(parent: Path) -> str | None:
    """The name of the version folder ``parent/current`` points at, or None when nothing is published."""
    try:
        return os.readlink(parent / "current")
    except OSError:
        return None


def read_manifest(parent: Path) -> dict | None:
    """The manifest of the published version of ``parent``; None when missing, unreadable or of another format."""
    name = current_version(parent)
    if name is None:
        return None
    try:
        manifest = json.loads((parent / name / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != name:
        return None
    return manifest


def write_manifest(version: Path, manifest: Mapping) -> dict:
    body = {"format": FORMAT, "version": version.name, **manifest}
    tmp = version / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(body, sort_keys=True, indent=1))
    os.replace(tmp, version / MANIFEST)
    return body


@contextlib.contextmanager
def part_lock(parent: Path):
    """An exclusive lock on one store part (``parent/.lock``). flock is released by the kernel when the holder
    dies, so a killed build never blocks the next one."""
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(parent / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def batch_ids(batches: Iterable) -> list[str]:
    return sorted({b.batch_id for b in batches})


def fingerprint(value) -> str:
    """A short stable digest of a JSON-able value (a policy's attributeMerge, a union schema)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def attribute_merge_of(policy: Mapping) -> dict:
    """The policy's attributeMerge as the build uses it (``order`` matters only for dataSetPrecedence)."""
    merge = dict(policy.get("attributeMerge") or {"type": "timestampOrdered"})
    if merge.get("type") != "dataSetPrecedence":
        merge.pop("order", None)
    return merge
