"""The run contract: how a request recorded in the catalog (a segment job, a profile-store refresh, and later an
export or an external-audience ingestion) becomes a run, and how the run is read back.

This module is the one home of the run tags, the run keys, the Dagster run-status names and the asset-key rules.
It imports no Dagster: the service layer speaks to runs only through the :class:`Launcher` protocol, whose one
implementation is :class:`segmentation_pipelines.dagster_launcher.DagsterLauncher`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

# --- run tags ------------------------------------------------------------------------------------------------------
TAG_KIND = "segmentation/kind"  # what the run is for: one of the KIND_* values
TAG_REQUEST_ID = "segmentation/job_id"  # the catalog id of the request (a segment job's id)
TAG_JOB_ID = TAG_REQUEST_ID
TAG_ATTEMPT = "segmentation/attempt"
TAG_ORG = "segmentation/org"
TAG_SANDBOX = "segmentation/sandbox"
TAG_EVALUATION_TIME = "segmentation/evaluation_time"
TAG_WORKER = "segmentation/worker"  # host:pid of the process running an in-process run
TAG_PARTITION = "dagster/partition"  # Dagster's own: the partition a run materializes
# host:pid of the process evaluating a launched run's segments (set by the op itself): the Dagster default run
# launcher cannot tell when its run worker died (no health check), so a kill -9 left such runs STARTED for ever.
TAG_STEP_WORKER = "segmentation/step_worker"
# Set on a run whose process died, before the run is ended: whoever reads the run's errors first (a run-status
# sensor, reconciliation, a read of the request) then reports the same lost worker (ERROR_WORKER_LOST).
TAG_WORKER_LOST = "segmentation/worker_lost"

KIND_SEGMENT_JOB = "segment_job"
KIND_PROFILE_STORE = "profile_store"
KIND_EXPORT_JOB = "export_job"

# --- Dagster jobs the requests run -------------------------------------------------------------------------------
SEGMENT_JOB = "segment_job"
PROFILE_STORE_JOB = "profile_store"
EXPORT_JOB = "export_job"
TAG_GATE_OVERRIDE = "segmentation/gate_override"  # export runs: publish-gate checks overridden ("*" or names)

# --- Dagster run statuses (by name) ------------------------------------------------------------------------------
RUN_QUEUED, RUN_STARTING, RUN_STARTED, RUN_CANCELING = "QUEUED", "STARTING", "STARTED", "CANCELING"
RUN_SUCCESS, RUN_FAILURE, RUN_CANCELED = "SUCCESS", "FAILURE", "CANCELED"
TERMINAL_RUN_STATUSES = frozenset({RUN_SUCCESS, RUN_FAILURE, RUN_CANCELED})

# Dagster run status -> the status of the request it runs (segment jobs; exports and ingestions use the same).
# Anything not listed (NOT_STARTED, MANAGED...) leaves the request as it is.
RUN_STATUS_TO_REQUEST = {
    RUN_QUEUED: "QUEUED",
    RUN_STARTING: "QUEUED",
    RUN_STARTED: "PROCESSING",
    RUN_CANCELING: "CANCELLING",
    RUN_SUCCESS: "SUCCEEDED",
    RUN_FAILURE: "FAILED",
    RUN_CANCELED: "CANCELLED",
}

# --- error codes of runs -------------------------------------------------------------------------------------------
ERROR_RUN_FAILED = "SEGP-200500"
ERROR_WORKER_LOST = "SEGP-200501"
ERROR_RUN_VANISHED = "SEGP-200404"


def run_status_name(status: Any) -> str:
    """``DagsterRunStatus.SUCCESS``, ``"success"`` or ``"SUCCESS"`` -> ``"SUCCESS"``."""
    return str(getattr(status, "value", status)).upper()


# --- asset keys ----------------------------------------------------------------------------------------------------


def key_part(value: str) -> str:
    """Dagster key parts allow ``[A-Za-z0-9_]`` only."""
    return re.sub(r"[^A-Za-z0-9_]", "_", value)


NAME_ID_SEPARATOR = "__"  # a slug never holds two underscores in a row, so the id suffix is unambiguous
ID_SUFFIX_LENGTH = 8
SLUG_LENGTH = 48


def readable_slug(name: str) -> str:
    """A name as a key part, its case kept: accents folded, runs of anything else as one ``_`` ("Käufer (EU)" ->
    ``Kaufer_EU``). Case is kept because the Dagster UI's asset and automation search boxes match keys and names
    case-sensitively: a person typing "VIP" must find ``VIP__…`` (docs/decisions/dagster-ui.md)."""
    ascii_name = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "_", ascii_name).strip("_")
    return slug[:SLUG_LENGTH].rstrip("_")


def id_suffix(ident: str) -> str:
    """The first characters of an id, the part of a readable name that keeps it unique."""
    return key_part(ident).replace("_", "")[:ID_SUFFIX_LENGTH].lower()


def readable_name(name: str, ident: str, fallback: str) -> str:
    """``<name as slug>__<first 8 characters of the id>``: what a person reads first, kept unique by the id."""
    return f"{readable_slug(name) or fallback}{NAME_ID_SEPARATOR}{id_suffix(ident)}"


def segment_asset_key(definition_id: str, name: str) -> list[str]:
    """The asset key (parts) a segment definition gets when it is created: ``["segment", "<name>__<id8>"]``.

    The name comes first so the Dagster UI (asset catalog and its search, lineage nodes, asset pages) reads by
    name; the id suffix keeps keys unique. The key is kept for the definition's life (stored in its document as
    ``dagster.assetKey``, see :func:`definition_asset_key`): a rename does not move the asset, its history or
    what depends on it; the current name is in the asset's description and ``audience`` tag.
    """
    return ["segment", readable_name(name, definition_id, "segment")]


def definition_asset_key(document: Mapping[str, Any]) -> list[str]:
    """The asset key of a segment definition document: the one stored at creation (``dagster.assetKey``), or for
    a definition stored before keys were kept, the key its current name gives."""
    stored = (document.get("dagster") or {}).get("assetKey")
    if isinstance(stored, str) and stored:
        return stored.split("/")
    return segment_asset_key(str(document["id"]), str(document.get("name") or ""))


def asset_key_string(parts: list[str]) -> str:
    """``["segment", "VIP__1a2b3c4d"]`` -> ``"segment/VIP__1a2b3c4d"`` (how Dagster writes a key)."""
    return "/".join(parts)


def is_segment_key_of(key_parts: list[str] | tuple[str, ...], definition_id: str) -> bool:
    """Whether an asset key is (was) a segment key of ``definition_id``, under any name, or the id-only key
    (``segment/<id with "-" as "_">``) segment assets had before keys were readable."""
    if len(key_parts) != 2 or key_parts[0] != "segment":
        return False
    last = key_parts[1]
    return last.endswith(NAME_ID_SEPARATOR + id_suffix(definition_id)) or last == definition_id.replace(
        "-", "_"
    )


def dagster_schedule_name(schedule_id: str, name: str) -> str:
    """The Dagster schedule of a catalog schedule: ``<name>__<id8>`` (catalog schedule names never change, so
    neither does this one)."""
    return readable_name(name, schedule_id, "schedule")


# --- evaluation-time partitions -------------------------------------------------------------------------------------
# Segment assets are partitioned by evaluation day (UTC): partition D holds the evaluation as of the end of day D
# (evaluation time D+1 00:00:00Z), as Dagster's daily partitions are processed once their day is over. A job
# evaluating at time T lands in the day whose window (start, end] holds T, so a daily 00:00 UTC schedule fills
# yesterday's partition and an evaluation "now" fills today's.
PARTITION_START = "2020-01-01"
PARTITION_FORMAT = "%Y-%m-%d"


def evaluation_partition(evaluation_time: datetime) -> str:
    """The daily partition key of an evaluation time (UTC; ``(start, end]`` windows)."""
    when = evaluation_time.astimezone(UTC) - timedelta(milliseconds=1)
    return when.strftime(PARTITION_FORMAT)


def partition_evaluation_time(partition_key: str) -> datetime:
    """The evaluation time of a daily partition: the end of its day (next midnight, UTC)."""
    day = datetime.strptime(partition_key, PARTITION_FORMAT).replace(tzinfo=UTC)
    return day + timedelta(days=1)


IDENTITY_GRAPH_ASSET = ["profiles", "identity_graph"]
EVENTS_ASSET = ["profiles", "experience_events"]


def merged_profiles_asset_key(merge_policy_id: str) -> list[str]:
    return ["profiles", "merged_profiles", key_part(merge_policy_id)]


def dataset_asset_key(dataset_id: str) -> list[str]:
    return ["datasets", key_part(dataset_id)]


def export_asset_key(dataset_id: str) -> list[str]:
    """The asset of an export destination (a dataset the export jobs write to)."""
    return ["exports", key_part(dataset_id)]


def store_part_asset_key(part: str) -> list[str]:
    """The asset of a profile-store part as :func:`profiles.store.stale_parts` names it."""
    if part == "identity_graph":
        return IDENTITY_GRAPH_ASSET
    if part == "events":
        return EVENTS_ASSET
    if part.startswith("merged/"):
        return merged_profiles_asset_key(part.split("/", 1)[1])
    raise ValueError(f"unknown profile store part {part!r}")


# --- requests and runs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    """One run of one request: which Dagster job, which assets, which tags. ``run_key`` dedups sensor launches."""

    kind: str
    request_id: str
    attempt: int
    job_name: str
    asset_selection: tuple[tuple[str, ...], ...]
    org: str
    sandbox: str
    tags: Mapping[str, str] = field(default_factory=dict)
    partition_key: str | None = None  # the evaluation-day partition of a segment evaluation

    @property
    def run_key(self) -> str:
        return f"{self.request_id}:{self.attempt}"

    @property
    def all_tags(self) -> dict[str, str]:
        return {
            TAG_KIND: self.kind,
            TAG_REQUEST_ID: self.request_id,
            TAG_ATTEMPT: str(self.attempt),
            TAG_ORG: self.org,
            TAG_SANDBOX: self.sandbox,
            **({TAG_PARTITION: self.partition_key} if self.partition_key else {}),
            **self.tags,
        }


@dataclass(frozen=True)
class RunInfo:
    """What the service layer knows of a run."""

    run_id: str
    status: str  # a Dagster run status name (RUN_*)
    tags: Mapping[str, str]
    worker_lost: bool = False  # an in-process run whose process is gone

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES


class Launcher(Protocol):
    """How the service layer starts, stops and reads runs (one implementation: Dagster)."""

    def new_run_id(self) -> str: ...

    def execute(self, request: RunRequest, run_id: str) -> tuple[str, list[dict] | None]:
        """Run ``request`` in this process and wait; ``(run status name, errors if it failed)``."""

    def find_run(self, request_id: str, run_id: str | None = None) -> RunInfo | None:
        """The run ``run_id``, else the newest run tagged with ``request_id``."""

    def terminate(self, run_id: str) -> str | None:
        """Ask the run to stop; its status afterwards (None if unknown)."""

    def mark_canceling(self, run_id: str) -> None:
        """Record that a running run is being cancelled (its work noticed the cancel itself)."""

    def end_lost_run(self, run_id: str) -> RunInfo | None:
        """End an unfinished run whose process is gone (failed, or cancelled if it was being cancelled)."""

    def errors(self, run_id: str) -> list[dict]:
        """``[{code, msg, callStack}]`` of a failed run (``ERROR_WORKER_LOST`` for a run ended as lost)."""

    def daemon_running(self) -> bool:
        """Whether a Dagster daemon is running sensors for this instance now."""
