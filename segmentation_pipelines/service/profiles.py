"""Profile access (``GET /data/core/ups/access/entities``): the merged profile an identity belongs to, under a
merge policy (the sandbox default when none is named), with all its identities and its ``segmentMembership``."""

from __future__ import annotations

from typing import Any

from segmentation_pipelines import duck
from segmentation_pipelines.engine import memberships
from segmentation_pipelines.errors import ApiError, BadRequest, NotFound
from segmentation_pipelines.profiles.layout import StoreLayout
from segmentation_pipelines.profiles.lookup import find_identity, read_profile, to_json_value
from segmentation_pipelines.profiles.xdm import PROFILE_CLASS
from segmentation_pipelines.service.audience_evaluations import AudienceEvaluations
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.merge_policies import MergePoliciesService

ENTITY_NOT_FOUND = "UPAPI-113000-404"


class ProfilesService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.layout = StoreLayout(ctx.sandbox_root)

    def get(self, namespace: str, id: str, merge_policy_id: str | None = None, **query: Any) -> dict:  # noqa: A002
        schema = query.get("schema.name") or query.get("schema_name") or PROFILE_CLASS
        if schema != PROFILE_CLASS:
            raise BadRequest(f"schema.name: only {PROFILE_CLASS} entities can be looked up, not {schema!r}.")
        if not namespace or not id:
            raise BadRequest("entityIdNS and entityId are required (the identity's namespace and value).")

        policy = MergePoliciesService(self.ctx).resolve(merge_policy_id)
        if not self.layout.identities_dir().exists():
            raise ApiError(
                404,
                f"No profile with identity '{namespace}:{id}': this sandbox has no profile data yet "
                "(ingest a batch into one of its datasets; ingestion builds the profile store).",
                code=ENTITY_NOT_FOUND,
            )
        found = find_identity(self.layout, namespace, id)
        if found is None:
            raise NotFound("Profile with identity", f"{namespace}:{id}", code=ENTITY_NOT_FOUND)
        if found["excluded"]:
            raise ApiError(
                404,
                f"The identity '{namespace}:{id}' belongs to an identity graph of {found['component_size']} identities, "
                "over the limit of 50: it is excluded from the profile store.",
                code=ENTITY_NOT_FOUND,
            )
        entity = read_profile(self.layout, policy["id"], found["profile_id"])
        if entity is None:
            raise NotFound(
                f"Profile (merge policy '{policy['id']}' not built yet?) with identity",
                f"{namespace}:{id}",
                code=ENTITY_NOT_FOUND,
            )
        membership = self.segment_membership_for(found["profile_id"])
        if membership:
            entity["segmentMembership"] = {"ups": membership}
        return {
            found["profile_id"]: {
                "entityId": found["profile_id"],
                "sources": [],
                "mergePolicy": {"id": policy["id"]},
                "entity": entity,
            }
        }

    def segment_membership_for(self, profile_id: str) -> dict[str, dict]:
        """``{audienceId: {status, lastQualificationTime}}`` from the latest evaluation of every audience.

        Reads the published membership files (``memberships/<audienceId>/...``) found through the catalog's
        ``audience_evaluations`` rows; empty when no segment job has run.
        """
        latest = AudienceEvaluations(self.ctx).latest_for()
        files = {aid: ev.path for aid, ev in latest.items() if ev.path and ev.path.exists()}
        if not files:
            return {}

        con = duck.connect(memory_limit="1GB")
        try:
            union = " UNION ALL ".join(
                f"SELECT {duck.sql_str(aid)} AS audience_id, status, lastQualificationTime FROM ({rows})"
                for aid, rows in memberships.profile_rows_sql(con, files, profile_id).items()
            )
            rows = con.execute(union).fetchall() if union else []
        finally:
            con.close()
        return {aid: {"status": status, "lastQualificationTime": to_json_value(t)} for aid, status, t in rows}
