"""Publish gates: per-definition thresholds an evaluation must meet before its audience may be exported.

A definition's gates (all optional, stored in ``publish_gates``, set with ``PUT /export/gates/{definitionId}``):

* ``maxSizeChangePct``: the member count may change by at most this percentage from the previous evaluation;
* ``maxExitShare``: at most this share (0-1) of the previous evaluation's members may exit;
* ``minMembers``: the audience needs at least this many members.

Each gate is a blocking Dagster asset check on the segment asset (``defs/exports/checks.py``), evaluated after
every evaluation from the same function (:func:`evaluate_gates`); an export job reading a segment whose latest
evaluation fails a gate is refused with the check named, unless the export overrides it
(``publishGates: {"override": true}`` or a list of check names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from segmentation_pipelines.catalog import models
from segmentation_pipelines.code_location import request_reload
from segmentation_pipelines.errors import BadRequest, NotFound
from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
from segmentation_pipelines.service.context import ServiceContext

# gate field -> the asset check's name
CHECKS = {
    "maxSizeChangePct": "publish_gate_size_change",
    "maxExitShare": "publish_gate_exit_share",
    "minMembers": "publish_gate_min_members",
}
ERROR_GATE_FAILED = "SEGP-EXPORT-412"


@dataclass(frozen=True)
class GateResult:
    check: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def validate_gates(body: Any) -> dict[str, float]:
    if not isinstance(body, Mapping):
        raise BadRequest('body: expected an object such as {"maxSizeChangePct": 50, "minMembers": 100}.')
    unknown = sorted(set(body) - set(CHECKS))
    if unknown:
        raise BadRequest(f"{unknown[0]}: not a publish gate; use {', '.join(CHECKS)}.")
    out: dict[str, float] = {}
    for name, value in body.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise BadRequest(f"{name}: expected a non-negative number (got {value!r}).")
        if name == "maxExitShare" and value > 1:
            raise BadRequest(f"maxExitShare: a share between 0 and 1 (got {value}).")
        out[name] = value
    if not out:
        raise BadRequest("body: set at least one of " + ", ".join(CHECKS) + " (DELETE removes the gates).")
    return out


def evaluate_gates(
    gates: Mapping[str, float], latest: Mapping | None, previous: Mapping | None
) -> list[GateResult]:
    """Each configured gate against the latest evaluation's counts (and the one before it)."""
    if latest is None:
        return [GateResult(CHECKS[g], True, "Not evaluated yet.") for g in gates]
    members = int(latest.get("members", 0))
    before = None if previous is None else int(previous.get("members", 0))
    exited = int(latest.get("exited", 0))
    results = []
    for gate, limit in gates.items():
        check = CHECKS[gate]
        if gate == "minMembers":
            ok = members >= limit
            text = f"{members} member(s); the floor is {limit:g}."
            meta = {"members": members, "floor": limit}
        elif gate == "maxSizeChangePct":
            if before is None:
                ok, change = True, 0.0
            else:
                change = abs(members - before) * 100.0 / max(before, 1)
                ok = change <= limit
            text = f"size changed by {change:.1f}% ({before} -> {members}); at most {limit:g}% allowed."
            meta = {"members": members, "previous_members": before, "change_pct": round(change, 3)}
        else:
            share = 0.0 if not before else exited / before
            ok = share <= limit
            text = f"{exited} of {before or 0} member(s) exited ({share:.1%}); at most {limit:.1%} allowed."
            meta = {"exited": exited, "previous_members": before, "exit_share": round(share, 4)}
        results.append(GateResult(check, ok, ("Passed: " if ok else "Failed: ") + text, meta))
    return results


def gates_snapshot(catalog) -> list[dict[str, Any]]:
    """Every definition's gates (for the Dagster checks, read at code-location load)."""
    m = models.PublishGate
    with catalog.session(readonly=True) as session:
        return [
            {"id": r.id, "org_id": r.org_id, "sandbox": r.sandbox, "gates": dict(r.body.get("gates") or {})}
            for r in session.scalars(select(m).order_by(m.id))
        ]


class PublishGates:
    """The gates of one sandbox's definitions."""

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def set(self, definition_id: str, body: Any) -> dict:
        gates = validate_gates(body)
        with self.ctx.catalog.session() as session:
            if self.ctx.repo(session, models.SegmentDefinition).get(definition_id) is None:
                raise NotFound("Segment definition", definition_id)
            repo = self.ctx.repo(session, models.PublishGate)
            row = repo.get(definition_id, for_update=True)
            doc = {"segmentId": definition_id, "gates": gates, "checks": {g: CHECKS[g] for g in gates}}
            if row is None:
                repo.add(id=definition_id, body=doc)
            else:
                repo.update(row, body=doc)

        request_reload(self.ctx.settings)  # the checks are Dagster definitions
        return doc

    def get(self, definition_id: str) -> dict:
        with self.ctx.catalog.session(readonly=True) as session:
            row = self.ctx.repo(session, models.PublishGate).get(definition_id)
            if row is None:
                raise NotFound("Publish gates of segment definition", definition_id)
            return {**row.body, "status": [r.__dict__ for r in self.status(definition_id)]}

    def delete(self, definition_id: str) -> None:
        with self.ctx.catalog.session() as session:
            repo = self.ctx.repo(session, models.PublishGate)
            row = repo.get(definition_id, for_update=True)
            if row is None:
                raise NotFound("Publish gates of segment definition", definition_id)
            repo.delete(row)

        request_reload(self.ctx.settings)

    def gates_of(self, definition_id: str) -> dict[str, float]:
        with self.ctx.catalog.session(readonly=True) as session:
            row = self.ctx.repo(session, models.PublishGate).get(definition_id)
            return dict(row.body.get("gates") or {}) if row is not None else {}

    def status(self, definition_id: str, gates: Mapping[str, float] | None = None) -> list[GateResult]:
        """The gates against the definition's latest evaluation (what its asset checks reported for it)."""
        gates = self.gates_of(definition_id) if gates is None else gates
        if not gates:
            return []
        history = AudienceEvaluations(self.ctx).history(definition_id, 2)
        latest = history[-1].counts if history else None
        previous = history[-2].counts if len(history) > 1 else None
        return evaluate_gates(gates, latest, previous)
