"""Catalog tables. One table per API resource; the AEP document lives in ``body``."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Scoped:
    """Columns every resource row has: identity, scope, times and the AEP document."""

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(255), index=True)
    sandbox: Mapped[str] = mapped_column(String(128), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[dict] = mapped_column(JSON)


class Dataset(Scoped, Base):
    __tablename__ = "datasets"
    name: Mapped[str] = mapped_column(String(255))
    xdm_class: Mapped[str] = mapped_column(String(128))  # _xdm.context.profile | _xdm.context.experienceevent


class Batch(Scoped, Base):
    __tablename__ = "batches"
    dataset_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(32))  # loading | success | failed
    content_hash: Mapped[str | None] = mapped_column(String(128), index=True)
    row_count: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected_count: Mapped[int] = mapped_column(BigInteger, default=0)


class MergePolicy(Scoped, Base):
    __tablename__ = "merge_policies"
    name: Mapped[str] = mapped_column(String(255))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)


class SegmentDefinition(Scoped, Base):
    __tablename__ = "segment_definitions"
    # Unique regardless of case, as the service compares names (migration 0005).
    __table_args__ = (
        Index("uq_segment_definition_name_ci", "org_id", "sandbox", func.lower(text("name")), unique=True),
    )
    name: Mapped[str] = mapped_column(String(255))
    batch_enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class Folder(Scoped, Base):
    """A folder of segment definitions and audiences (``/folders``, an extension; segment search walks them)."""

    __tablename__ = "folders"
    name: Mapped[str] = mapped_column(String(255))
    namespace: Mapped[str] = mapped_column(String(128))
    parent_folder_id: Mapped[str] = mapped_column(String(64), index=True)  # "root" at the top


class Audience(Scoped, Base):
    """Every audience: one per segment definition (type SegmentDefinition) and external ones."""

    __tablename__ = "audiences"
    name: Mapped[str] = mapped_column(String(255))
    audience_id: Mapped[str] = mapped_column(String(255), index=True)
    type: Mapped[str] = mapped_column(String(64))


class AudienceEvaluation(Base):
    """Publication pointer of one evaluation of one audience: its membership file and counts.

    Written after the membership file is complete, so a reader never sees a partial evaluation.
    """

    __tablename__ = "audience_evaluations"
    __table_args__ = (
        Index("ix_audience_evaluations_lookup", "org_id", "sandbox", "audience_id", "evaluation_ms"),
    )
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(255))
    sandbox: Mapped[str] = mapped_column(String(128))
    audience_id: Mapped[str] = mapped_column(String(64))
    evaluation_ms: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(Text)
    counts: Mapped[dict] = mapped_column(JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class SegmentJob(Scoped, Base):
    __tablename__ = "segment_jobs"
    status: Mapped[str] = mapped_column(String(32), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    evaluation_ms: Mapped[int | None] = mapped_column(BigInteger)


class ExportJob(Base):
    """Export jobs have integer ids in the contract."""

    __tablename__ = "export_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(255), index=True)
    sandbox: Mapped[str] = mapped_column(String(128), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    body: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)


class Schedule(Scoped, Base):
    __tablename__ = "schedules"
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    cron: Mapped[str | None] = mapped_column(String(255))  # the user's Quartz string
    dagster_cron: Mapped[str | None] = mapped_column(String(255))  # the 5-field cron Dagster runs
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")


class ExternalAudience(Scoped, Base):
    __tablename__ = "external_audiences"
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))


class ExternalAudienceOperation(Scoped, Base):
    __tablename__ = "external_audience_operations"
    audience_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32))


class ExternalAudienceRun(Scoped, Base):
    __tablename__ = "external_audience_runs"
    audience_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    run_id: Mapped[str | None] = mapped_column(String(64), index=True)


class Preview(Scoped, Base):
    """A preview and its estimate (same id, as the contract says)."""

    __tablename__ = "previews"
    state: Mapped[str] = mapped_column(String(32))


class PublishGate(Scoped, Base):
    """Publish-gate thresholds of one segment definition (id = the definition id; an export extension)."""

    __tablename__ = "publish_gates"
