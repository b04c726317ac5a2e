"""The landed batches of a sandbox, as the profile-store builds and the exports read them (a catalog read)."""

from __future__ import annotations

from segmentation_pipelines.catalog import models
from segmentation_pipelines.profiles.store import BatchRef
from segmentation_pipelines.profiles.xdm import CLASS_KEYS
from segmentation_pipelines.service.context import ServiceContext

SUCCESS = "success"  # the status of a complete batch


def successful_batches(ctx: ServiceContext) -> dict[str, list[BatchRef]]:
    """``{"profile": [...], "experienceevent": [...]}``: every complete batch of ``ctx``'s sandbox, oldest first."""
    out: dict[str, list[BatchRef]] = {"profile": [], "experienceevent": []}
    with ctx.catalog.session() as s:
        classes = {d.id: d.xdm_class for d in ctx.repo(s, models.Dataset).find()}
        for b in ctx.repo(s, models.Batch).find(
            models.Batch.status == SUCCESS, order_by=[models.Batch.created_ms]
        ):
            if b.body.get("exportJobId") is not None:
                continue  # an export's output is never read back as profile data
            if b.dataset_id in classes:
                out[CLASS_KEYS[classes[b.dataset_id]]].append(
                    BatchRef(
                        b.dataset_id,
                        b.id,
                        int(b.body.get("completed") or b.updated_ms),
                        b.body.get("columns") or {},
                        int(b.row_count or 0),
                    )
                )
    return out
