"""XDM vocabulary the store relies on: class names, the identity-map shape, and the types of well-known fields."""

from __future__ import annotations

PROFILE_CLASS = "_xdm.context.profile"
EVENT_CLASS = "_xdm.context.experienceevent"

#: XDM class name -> key of the schema dict (``docs/data-model.md``).
CLASS_KEYS = {PROFILE_CLASS: "profile", EVENT_CLASS: "experienceevent"}

#: XDM class name -> the ``schemaRef.id`` of a dataset of that class.
SCHEMA_REFS = {
    PROFILE_CLASS: "https://ns.adobe.com/xdm/context/profile",
    EVENT_CLASS: "https://ns.adobe.com/xdm/context/experienceevent",
}

#: ``{namespace: [{id, primary}]}`` stored as a list of key/value structs (same physical shape in DuckDB and Polars).
IDENTITY_MAP_TYPE = 'STRUCT("key" VARCHAR, "value" STRUCT(id VARCHAR, "primary" BOOLEAN)[])[]'

#: Map-typed XDM fields: stored as ``LIST(STRUCT(key, value))``, exposed as type ``map`` in the schema.
MAP_FIELDS = frozenset({"identityMap", "segmentMembership"})

#: Fields whose type XDM fixes, whatever a JSON file suggests (JSON has no date type; numbers may look integral).
KNOWN_TYPES: dict[str, str] = {
    "timestamp": "TIMESTAMP",
    "_id": "VARCHAR",
    "eventType": "VARCHAR",
    "person.birthDate": "DATE",
    "person.birthYear": "BIGINT",
    "extSourceSystemAudit.lastUpdatedDate": "TIMESTAMP",
    "extSourceSystemAudit.createdDate": "TIMESTAMP",
    "commerce.order.priceTotal": "DOUBLE",
    "commerce.purchases.value": "DOUBLE",
    "commerce.checkouts.value": "DOUBLE",
    "commerce.productViews.value": "DOUBLE",
    "commerce.productListAdds.value": "DOUBLE",
    "productListItems[].priceTotal": "DOUBLE",
    "productListItems[].quantity": "BIGINT",
    "loyalty.points": "BIGINT",
}

#: Where the timestamp-ordered merge policy reads a fragment's update time.
LAST_UPDATED_PATH = ("extSourceSystemAudit", "lastUpdatedDate")

#: Namespaces of the demo data (and common AEP standard namespaces).
STANDARD_NAMESPACES = ("ECID", "Email", "Phone", "CRMID", "loyaltyId")
