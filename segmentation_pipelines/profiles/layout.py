"""Where the profile store keeps its files under a sandbox's data folder, and how it publishes them.

``datasets/<datasetId>/<batchId>/`` holds a batch (``part-*.parquet``, ``rejects.jsonl``); it is written under a
temporary name and renamed into place when complete. ``store/<name>/current`` is a symbolic link to the newest
complete version folder; a new version is written beside it and the link is replaced with ``os.replace``, so a
reader never sees a half-written store; ``store/<name>/previous`` names the version it replaced, kept for readers
that still have it open (``docs/data-model.md``).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoreLayout:
    sandbox_root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "sandbox_root", Path(self.sandbox_root))

    # datasets and batches
    def dataset_dir(self, dataset_id: str) -> Path:
        return self.sandbox_root / "datasets" / dataset_id

    def batch_dir(self, dataset_id: str, batch_id: str) -> Path:
        return self.dataset_dir(dataset_id) / batch_id

    def batch_files(self, dataset_id: str, batch_id: str) -> list[Path]:
        return sorted(self.batch_dir(dataset_id, batch_id).glob("part-*.parquet"))

    def rejects_path(self, dataset_id: str, batch_id: str) -> Path:
        return self.batch_dir(dataset_id, batch_id) / "rejects.jsonl"

    # the built store
    @property
    def store_dir(self) -> Path:
        return self.sandbox_root / "store"

    def tmp_dir(self) -> Path:
        """Scratch space (DuckDB spill files)."""
        path = self.sandbox_root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def identity_graph_dir(self) -> Path:
        return self.store_dir / "identity_graph"

    def identities_dir(self) -> Path:
        """The published identity graph: range files of ``namespace, id, primary, profile_id, component_size,
        excluded`` (each holding one range of profile ids) and ``manifest.json``. Exists once the graph is built."""
        return self.identity_graph_dir() / "current"

    def identities_path(self) -> str:
        """Glob of the identity graph's files (always at least one once the graph is built)."""
        return str(self.identities_dir() / "*.parquet")

    def events_dir(self) -> Path:
        return self.store_dir / "events"

    def events_path(self) -> str:
        """Glob of the keyed experience events (always at least one file once the store is built)."""
        return str(self.events_dir() / "current" / "*.parquet")

    def merged_dir(self, merge_policy_id: str) -> Path:
        return self.store_dir / "merged" / merge_policy_id

    def profiles_dir(self, merge_policy_id: str) -> Path:
        """The published merged profiles of a policy: range files (each holding one range of profile ids) and
        ``manifest.json``. Exists once they are built."""
        return self.merged_dir(merge_policy_id) / "current"

    def profiles_path(self, merge_policy_id: str) -> str:
        """Glob of the merged profiles' files (always at least one once they are built)."""
        return str(self.profiles_dir(merge_policy_id) / "*.parquet")

    def memberships_dir(self) -> Path:
        return self.sandbox_root / "memberships"


def pinned(glob: str | Path) -> str:
    """``glob`` (``<part>/current/*.parquet``) with ``current`` resolved: the files of the version published now,
    whatever is published later while a reader works (the version stays until two more are published)."""
    p = Path(glob)
    return str(p.parent.resolve() / p.name)


def new_version_dir(parent: Path) -> Path:
    """A fresh, not yet published version folder under ``parent``."""
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f"v-{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def _target(link: Path) -> str | None:
    try:
        return os.readlink(link)
    except OSError:
        return None


def publish_version(parent: Path, version: Path) -> None:
    """Point ``parent/current`` at ``version`` atomically; the version it replaces becomes ``previous`` (kept for
    readers that still have it open) and every other version folder is deleted. Callers hold the part's lock."""
    link = parent / "current"
    old = _target(link)
    tmp_link = parent / f".current-{uuid.uuid4().hex}"
    os.symlink(version.name, tmp_link)
    os.replace(tmp_link, link)
    if old and old != version.name:
        tmp_prev = parent / f".previous-{uuid.uuid4().hex}"
        os.symlink(old, tmp_prev)
        os.replace(tmp_prev, parent / "previous")
    clean_versions(parent)


def clean_versions(parent: Path) -> None:
    """Delete every version folder that is neither ``current`` nor ``previous``: older versions, and the
    half-written folders of builds that were killed (a build calls this under the lock before it starts)."""
    keep = {_target(parent / "current"), _target(parent / "previous")}
    for p in parent.glob("v-*"):
        if p.name not in keep and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
    for p in parent.glob(".current-*"):
        p.unlink(missing_ok=True)
    for p in parent.glob(".previous-*"):
        p.unlink(missing_ok=True)


def publish_dir(tmp: Path, final: Path) -> None:
    """Rename a completely written folder into place (batches)."""
    os.replace(tmp, final)
