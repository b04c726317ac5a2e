"""SegmentationClient: the API resources in Python, in-process (local) or over HTTP, with one behaviour.

    client = SegmentationClient(home=".segmentation", sandbox="prod")                  # in-process
    client = SegmentationClient(base_url="http://127.0.0.1:8080", token="...", sandbox="prod")   # REST API
    client.datasets.create({"name": "crm", "schema": {"name": "_xdm.context.profile"}})

Each resource class declares every operation ONCE with :func:`op`: the service method it calls in-process, and
the HTTP method + path (+ where each argument goes) it calls over REST. Both transports take and return the AEP
JSON shapes as dicts, and every failure is a :class:`SegmentationError` (HTTP status + AEP error body).

Adding an operation: add one line to the resource class, e.g.
``cancel = op("DELETE /segment/jobs/{id}", "id", service_method="delete")``. The client method takes the listed
arguments positionally or by name:

* ``{name}`` in the path is a path parameter;
* the argument ``body`` (or the one named by ``body=``) is the JSON body; ``body_fields=`` arguments are sent
  together as one JSON object;
* ``query=True`` passes any extra keyword arguments as query parameters (as strings in both transports, as a URL
  carries them); every other argument is a query parameter (renamed through ``query_names``).

In-process, the service method (default: the attribute name) gets the required arguments positionally, and the
optional ones (``optional=``) and the extra query parameters by keyword.

A method with extra local behaviour overrides the generated one and branches on :attr:`Resource.local`, calling
``self.call(op, ...)`` for the shared part (see :meth:`SegmentJobs.create` for the shape).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import tenacity
from sqlalchemy import text

from segmentation_pipelines.errors import SegmentationError, error_body
from segmentation_pipelines.service.context import ServiceContext
from segmentation_pipelines.service.export_jobs import TERMINAL as EXPORT_JOB_ENDED
from segmentation_pipelines.service.segment_jobs import TERMINAL as SEGMENT_JOB_ENDED
from segmentation_pipelines.service.services import Services
from segmentation_pipelines.settings import get_settings
from segmentation_pipelines.timeutil import iso, parse_time
from segmentation_pipelines.version import __version__

UPS = "/data/core/ups"
AIS = "/data/core/ais"
CATALOG = "/data/foundation/catalog"
IMPORT = "/data/foundation/import"
DEFAULT_TIMEOUT = 60.0


def _query_value(value: Any) -> str:
    """A query parameter as a URL carries it (so local calls see what REST calls see)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Operation:
    """One API operation, declared once for both transports (see the module docstring)."""

    http: str
    args: tuple[str, ...] = ()
    body: str | None = None
    body_fields: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    query: bool = False
    query_names: Mapping[str, str] = field(default_factory=dict)
    fixed_query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    service_method: str | None = None
    prefix: str | None = None
    name: str = ""

    @property
    def method(self) -> str:
        return self.http.split(" ", 1)[0]

    @property
    def path(self) -> str:
        return self.http.split(" ", 1)[1]

    def __post_init__(self) -> None:
        if self.body is None and "body" in self.args:
            self.body = "body"

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        if self.service_method is None:
            self.service_method = name.lstrip("_")

    def __get__(self, resource: Resource | None, owner: type) -> Any:
        if resource is None:
            return self

        def bound(*args: Any, **kwargs: Any) -> Any:
            return resource.call(self, *args, **kwargs)

        bound.__name__ = self.name
        bound.__doc__ = f"{self.http} (service method: {self.service_method})"
        return bound

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Named argument values, and the extra query parameters, of one call."""
        names = (*self.args, *self.optional)
        if len(args) > len(names):
            raise TypeError(f"{self.name}() takes {len(names)} arguments ({len(args)} given)")
        values = dict(zip(names, args, strict=False))
        extra: dict[str, str] = {}
        for key, value in kwargs.items():
            if key in names:
                if key in values:
                    raise TypeError(f"{self.name}() got multiple values for argument '{key}'")
                values[key] = value
            elif self.query:
                if value is not None:
                    extra[key] = _query_value(value)
            else:
                raise TypeError(f"{self.name}() got an unexpected keyword argument '{key}'")
        missing = [n for n in self.args if n not in values]
        if missing:
            raise TypeError(f"{self.name}() missing required argument(s): {', '.join(missing)}")
        return values, extra


def op(http: str, *args: str, **options: Any) -> Operation:
    """Declare an operation: ``op("GET /segment/definitions/{id}", "id")`` (see the module docstring)."""
    return Operation(http, tuple(args), **options)


class Transport:
    local: bool

    def call(
        self, resource: Resource, operation: Operation, values: dict[str, Any], extra: dict[str, str]
    ) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalTransport(Transport):
    """Calls the service layer in this process."""

    local = True

    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.services = Services(ctx)

    def service(self, name: str) -> Any:
        return getattr(self.services, name)

    def call(
        self, resource: Resource, operation: Operation, values: dict[str, Any], extra: dict[str, str]
    ) -> Any:
        service = self.service(resource.service)
        method = getattr(service, operation.service_method)  # every operation has one (test_client_routes)
        positional = [values[n] for n in operation.args]
        keywords = {n: values[n] for n in operation.optional if values.get(n) is not None}
        if operation.query:
            query = {**operation.fixed_query, **extra}
            keywords.update(query)
        try:
            return method(*positional, **keywords)
        except SegmentationError as exc:  # as over REST, every error names the request (for logs and reports)
            if isinstance(exc.body, dict) and not exc.body.get("requestId"):
                exc.body["requestId"] = self.ctx.request_id or str(uuid.uuid4())
            raise


class HttpTransport(Transport):
    """Calls the REST API with the AEP headers."""

    local = False

    def __init__(
        self,
        base_url: str,
        token: str | None,
        api_key: str | None,
        org_id: str | None,
        sandbox: str,
        timeout: float,
        http_client: httpx.Client | None = None,
    ):
        headers = {"x-sandbox-name": sandbox, "x-api-key": api_key or "segmentation-pipelines"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if org_id:
            headers["x-gw-ims-org-id"] = org_id
        self.http = http_client or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self.http.headers.update(headers)

    def call(
        self, resource: Resource, operation: Operation, values: dict[str, Any], extra: dict[str, str]
    ) -> Any:
        prefix = resource.prefix if operation.prefix is None else operation.prefix
        path_values = {
            k: quote(str(v), safe="") for k, v in values.items() if "{" + k + "}" in operation.path
        }
        url = prefix + operation.path.format(**path_values)
        query: dict[str, str] = dict(operation.fixed_query)
        for name, value in values.items():
            if (
                name in path_values
                or name == operation.body
                or name in operation.body_fields
                or value is None
            ):
                continue
            query[operation.query_names.get(name, name)] = _query_value(value)
        query.update(extra)
        json_body: Any = None
        if operation.body is not None:
            json_body = values.get(operation.body)
        elif operation.body_fields:
            json_body = {n: values[n] for n in operation.body_fields if values.get(n) is not None}
        return self.request(
            operation.method,
            url,
            params=query or None,
            json=json_body,
            headers=dict(operation.headers) or None,
        )

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """One HTTP request; the decoded JSON answer, or a SegmentationError (503 when the API is unreachable)."""
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            message = f"Cannot reach the REST API at {self.http.base_url}: {exc}"
            raise SegmentationError(503, error_body(503, message)) from exc
        return self.decode(response)

    @staticmethod
    def decode(response: httpx.Response) -> Any:
        if response.is_success:
            if response.status_code == 204 or not response.content:
                return None
            return response.json()
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "errors" not in body:
            body = error_body(response.status_code, response.text[:500] or response.reason_phrase)
        raise SegmentationError(response.status_code, body)

    def close(self) -> None:
        self.http.close()


class Resource:
    """One API resource: its operations are :class:`Operation` class attributes."""

    service: str = ""
    prefix: str = UPS

    def __init__(self, transport: Transport):
        self.transport = transport

    @property
    def local(self) -> bool:
        return self.transport.local

    def call(self, operation: Operation, *args: Any, **kwargs: Any) -> Any:
        values, extra = operation.bind(args, kwargs)
        return self.transport.call(self, operation, values, extra)

    @classmethod
    def operations(cls) -> dict[str, Operation]:
        found: dict[str, Operation] = {}
        for klass in reversed(cls.__mro__):
            found.update({k: v for k, v in vars(klass).items() if isinstance(v, Operation)})
        return found


class JobResource(Resource):
    """A resource whose rows are jobs that end (segment jobs, export jobs): created, then optionally waited for."""

    ended: frozenset[str] = frozenset()  # the statuses a job ends in
    what: str = ""  # the job in messages: "Segment job"

    def _create_job(self, body: Any, wait: bool, timeout: float, poll: float, **params: Any) -> Any:
        """In-process the service runs the job here (through Dagster) when ``wait``; over HTTP the REST API queues
        it (its sensor launches the run) and this polls ``GET`` until the job ends."""
        if self.local:
            return self.transport.service(self.service).create(body, wait=wait, **params)
        job = self._create(body, **params)
        return self.wait(job["id"], timeout=timeout, poll=poll) if wait else job

    def wait(self, id: Any, timeout: float = 600.0, poll: float = 0.5) -> Any:  # noqa: A002 - the API's name
        """Poll the job until it ends (``SUCCEEDED``, ``FAILED`` or ``CANCELLED``); the job (TimeoutError after
        ``timeout`` seconds)."""
        return _poll(
            lambda: self.get(id), lambda job: job["status"] in self.ended, timeout, poll, f"{self.what} {id}"
        )


# --- Resources (contract: /work/shared/spec/aep-api.md; services: segmentation_pipelines/service/) -------------


class Datasets(Resource):
    service = "datasets"
    prefix = CATALOG
    create = op("POST /dataSets", "body")
    list = op("GET /dataSets", query=True)
    get = op("GET /dataSets/{id}", "id")
    delete = op("DELETE /dataSets/{id}", "id")
    ingest = op("POST /dataSets/{dataset_id}/batches", "dataset_id", "paths", body_fields=("paths",))
    batches = op("GET /dataSets/{dataset_id}/batches", "dataset_id")
    get_batch = op("GET /batches/{batch_id}", "batch_id")
    delete_batch = op("DELETE /batches/{batch_id}", "batch_id")
    _rejects = op(
        "GET /batches/{batch_id}/rejects", "batch_id", optional=("limit",), service_method="rejects"
    )
    schema = op("GET /schema")

    def rejects(self, batch_id: str, limit: int | None = None) -> dict:
        """Rejected rows of a batch: ``{"batchId", "rejects": [...]}`` (the service returns the bare list)."""
        result = self._rejects(batch_id, limit=limit)
        return {"batchId": batch_id, "rejects": result} if self.local else result

    # Batch Ingestion API (/data/foundation/import): how files reach a remote server's landing area.
    create_batch = op("POST /batches", "body", prefix=IMPORT)
    _upload_file = op(
        "PUT /batches/{batch_id}/datasets/{dataset_id}/files/{file_name}",
        "batch_id",
        "dataset_id",
        "file_name",
        "chunks",
        prefix=IMPORT,
        service_method="upload_file",
    )
    complete_batch = op(
        "POST /batches/{batch_id}", "batch_id", fixed_query={"action": "COMPLETE"}, prefix=IMPORT
    )

    def upload_file(self, batch_id: str, dataset_id: str, file_name: str, path) -> dict:
        """Upload one local file into an open batch (streamed from disk)."""
        if self.local:
            with open(path, "rb") as f:
                return self._upload_file(batch_id, dataset_id, file_name, iter(lambda: f.read(1 << 20), b""))
        op_ = type(self)._upload_file
        values = {"batch_id": batch_id, "dataset_id": dataset_id, "file_name": file_name}
        url = IMPORT + op_.path.format(**{k: quote(str(v), safe="") for k, v in values.items()})
        with open(path, "rb") as body:
            return self.transport.request(
                "PUT", url, content=body, headers={"content-type": "application/octet-stream"}
            )

    def upload(self, dataset_id: str, paths: builtins.list) -> dict:
        """Ingest local files as one batch. Over HTTP they are uploaded through the Batch Ingestion API (open a
        batch, PUT each file, COMPLETE) into the sandbox's landing area; in-process they are ingested where they
        are. Returns the batch, as :meth:`ingest` does."""

        files = [Path(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
        if self.local:
            return self.ingest(dataset_id, [str(p) for p in files])
        fmt = "parquet" if {p.suffix.lower() for p in files} <= {".parquet", ".pq"} else "json"
        batch = self.create_batch({"datasetId": dataset_id, "inputFormat": {"format": fmt}})
        seen: set[str] = set()
        for i, path in enumerate(files):
            name = path.name if path.name not in seen else f"{i:04d}-{path.name}"
            seen.add(name)
            self.upload_file(batch["id"], dataset_id, name, path)
        return self.complete_batch(batch["id"])


class Profiles(Resource):
    service = "profiles"
    get = op(
        "GET /access/entities",
        "namespace",
        "id",
        optional=("merge_policy_id",),
        query_names={"namespace": "entityIdNS", "id": "entityId", "merge_policy_id": "mergePolicyId"},
        fixed_query={"schema.name": "_xdm.context.profile"},
    )


class MergePolicies(Resource):
    service = "merge_policies"
    create = op("POST /config/mergePolicies", "body")
    list = op("GET /config/mergePolicies", query=True)
    get = op("GET /config/mergePolicies/{id}", "id")
    update = op("PUT /config/mergePolicies/{id}", "id", "body")
    patch = op("PATCH /config/mergePolicies/{id}", "id", "body", service_method="update")
    delete = op("DELETE /config/mergePolicies/{id}", "id")


class SegmentDefinitions(Resource):
    service = "segment_definitions"
    create = op("POST /segment/definitions", "body")
    list = op("GET /segment/definitions", query=True)
    get = op("GET /segment/definitions/{id}", "id")
    update = op("PATCH /segment/definitions/{id}", "id", "body")
    delete = op("DELETE /segment/definitions/{id}", "id")
    bulk_get = op("POST /segment/definitions/bulk-get", "body")
    convert = op("POST /segment/conversion", "body")


class SegmentJobs(JobResource):
    service = "segment_jobs"
    ended = SEGMENT_JOB_ENDED
    what = "Segment job"
    _create = op(
        "POST /segment/jobs",
        "body",
        optional=("evaluation_time",),
        query_names={"evaluation_time": "evaluationTime"},
        service_method="create",
    )
    list = op("GET /segment/jobs", query=True)
    get = op("GET /segment/jobs/{id}", "id")
    delete = op("DELETE /segment/jobs/{id}", "id")
    cancel = op("DELETE /segment/jobs/{id}", "id", service_method="delete")
    bulk_get = op("POST /segment/jobs/bulk-get", "body")

    def create(
        self,
        body: Any,
        evaluation_time: Any = None,
        wait: bool = False,
        timeout: float = 600.0,
        poll: float = 0.5,
    ) -> Any:
        """Create a segment job evaluating at ``evaluation_time`` (datetime or ISO 8601; default: when it starts).

        ``wait=True``: return the finished job. In-process the job runs here, through Dagster; over HTTP the REST
        API queues it (its sensor launches the run) and this polls ``GET`` until the job ends (``timeout`` s).
        """

        when = None
        if evaluation_time is not None:
            when = iso(parse_time(evaluation_time))
        return self._create_job(body, wait, timeout, poll, evaluation_time=when)


class Schedules(Resource):
    service = "schedules"
    create = op("POST /config/schedules", "body")
    list = op("GET /config/schedules", query=True)
    get = op("GET /config/schedules/{id}", "id")
    update = op("PATCH /config/schedules/{id}", "id", "patch_ops", body="patch_ops")
    delete = op("DELETE /config/schedules/{id}", "id")
    add_audiences = op("POST /config/schedules/add-audiences", "body")
    remove_audiences = op("POST /config/schedules/remove-audiences", "body")
    audience_map = op("POST /config/schedules/audience-map", "body")
    trigger = op("POST /config/schedules/trigger", "body")


class Audiences(Resource):
    service = "audiences"
    create = op("POST /audiences", "body")
    list = op("GET /audiences", query=True)
    get = op("GET /audiences/{id}", "id")
    update = op("PUT /audiences/{id}", "id", "body")
    patch = op("PATCH /audiences/{id}", "id", "patch_ops", body="patch_ops")
    delete = op("DELETE /audiences/{id}", "id")
    bulk_get = op("POST /audiences/bulk-get", "body")
    members = op("GET /audiences/{id}/members", "id", query=True)


class ExportJobs(JobResource):
    service = "export_jobs"
    ended = EXPORT_JOB_ENDED
    what = "Export job"
    _create = op("POST /export/jobs", "body", service_method="create")
    list = op("GET /export/jobs", query=True)
    get = op("GET /export/jobs/{id}", "id")
    delete = op("DELETE /export/jobs/{id}", "id")
    cancel = op("DELETE /export/jobs/{id}", "id", service_method="delete")
    set_gates = op("PUT /export/gates/{definition_id}", "definition_id", "body")
    get_gates = op("GET /export/gates/{definition_id}", "definition_id")
    delete_gates = op("DELETE /export/gates/{definition_id}", "definition_id")

    def create(self, body: Any, wait: bool = False, timeout: float = 600.0, poll: float = 0.5) -> Any:
        """Create an export job. ``wait=True``: return the finished job (in-process it runs here, through Dagster;
        over HTTP this polls ``GET`` until the job ends, ``timeout`` s)."""
        return self._create_job(body, wait, timeout, poll)


class Previews(Resource):
    service = "previews"
    create = op("POST /preview", "body")
    get = op("GET /preview/{id}", "id", query=True)
    delete = op("DELETE /preview/{id}", "id")
    cancel = op("DELETE /preview/{id}", "id", service_method="delete")

    def run(
        self, expression: str, wait: bool = True, timeout: float = 120.0, poll: float = 0.1, **fields: Any
    ) -> Any:
        """Create a preview of the PQL ``expression`` (``fields``: more body fields, e.g. ``baseSegmentId``).

        ``wait=True``: poll until it is ``RESULT_READY`` or ``FAILED`` and return its first page (``limit``
        from ``fields``, default 1000) with its estimate under ``"estimate"``; otherwise the created preview."""
        limit = fields.pop("limit", None)
        created = self.create({"predicateExpression": expression, "predicateType": "pql/text", **fields})
        if not wait:
            return created
        preview = self.wait(created["previewId"], timeout=timeout, poll=poll, limit=limit)
        preview["estimate"] = Estimates(self.transport).get(created["previewId"])
        return preview

    def wait(self, id: str, timeout: float = 120.0, poll: float = 0.1, **query: Any) -> Any:  # noqa: A002
        """Poll ``GET /preview/{id}`` until ``RESULT_READY`` or ``FAILED`` (TimeoutError after ``timeout`` s)."""
        return _poll(
            lambda: self.get(id, **query),
            lambda p: p["state"] in ("RESULT_READY", "FAILED"),
            timeout,
            poll,
            f"Preview {id}",
        )


class Estimates(Resource):
    service = "estimates"
    get = op("GET /estimate/{id}", "id")


class ExternalAudiences(Resource):
    service = "external_audiences"
    prefix = AIS
    _create = op("POST /external-audience/", "body", service_method="create")
    operation = op("GET /external-audiences/operations/{operation_id}", "operation_id")
    list = op("GET /external-audiences", query=True)
    get = op("GET /external-audience/{id}", "id")
    update = op("PATCH /external-audience/{id}", "id", "body")
    delete = op("DELETE /external-audience/{id}", "id")
    _start_run = op("POST /external-audience/{id}/runs", "id", "body", service_method="start_run")
    runs = op("GET /external-audience/{id}/runs", "id")
    get_run = op("GET /external-audience/{id}/runs/{run_id}", "id", "run_id")
    extend_ttl = op("POST /external-audience/extend-ttl/{id}", "id")

    def create(self, body: Any, wait: bool = False, timeout: float = 600.0, poll: float = 0.5) -> Any:
        """Create an external audience; 202 ``{operationId, operationDetails}``.

        ``wait=True``: return once its first ingestion has ended, with the operation's ``status`` (``SUCCESS`` or
        ``FAILED``) and ``audienceId``. In-process the ingestion runs here, through Dagster; over HTTP this polls
        the operation.
        """
        if self.local:
            created = self.transport.service(self.service).create(body, wait=wait)
        else:
            created = self._create(body)
        if not wait:
            return created
        done = _poll(
            lambda: self.operation(created["operationId"]),
            lambda o: o["status"] != "PROCESSING",
            timeout,
            poll,
            f"The creation {created['operationId']}",
        )
        return {**created, "status": done["status"], "audienceId": done["audienceId"]}

    def start_run(
        self, id: str, body: Any = None, wait: bool = False, timeout: float = 600.0, poll: float = 0.5
    ) -> Any:  # noqa: A002
        """Start an ingestion run; ``wait=True`` returns the ended run (in-process it runs here, through Dagster)."""
        if self.local:
            return self.transport.service(self.service).start_run(id, body, wait=wait)
        run = self._start_run(id, body)
        return self.wait_run(id, run["runId"], timeout, poll) if wait else run

    def wait_run(self, id: str, run_id: str, timeout: float = 600.0, poll: float = 0.5) -> Any:  # noqa: A002
        """Poll a run until it is ``SUCCESS``, ``FAILED`` or ``CANCELLED``."""
        return _poll(
            lambda: self.get_run(id, run_id),
            lambda r: r["status"] in ("SUCCESS", "FAILED", "CANCELLED"),
            timeout,
            poll,
            f"Run {run_id}",
        )


def _poll(read: Any, done: Any, timeout: float, poll: float, what: str) -> Any:
    """``read()`` every ``poll`` s until ``done(value)``; the value (TimeoutError naming ``what`` after ``timeout`` s)."""
    polling = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(poll),
        retry=tenacity.retry_if_result(lambda value: not done(value)),
    )
    try:
        return polling(read)
    except tenacity.RetryError as exc:
        raise TimeoutError(f"{what} did not end within {timeout} s.") from exc


_SEARCH = {
    "headers": {"x-ups-search-version": "1.0"},
    "fixed_query": {"schema.name": "_xdm.context.segmentdefinition"},
}


class Search(Resource):
    service = "search"
    namespaces = op("GET /search/namespaces", query=True, **_SEARCH)
    entities = op("GET /search/entities", query=True, **_SEARCH)
    taxonomy = op("GET /search/taxonomy", query=True, **_SEARCH)


class Folders(Resource):
    """Folders of definitions and audiences (an extension; segment search lists and walks them)."""

    service = "folders"
    create = op("POST /folders", "body")
    list = op("GET /folders", query=True)
    get = op("GET /folders/{id}", "id")
    update = op("PATCH /folders/{id}", "id", "patch_ops", body="patch_ops")
    delete = op("DELETE /folders/{id}", "id")


class SegmentationClient:
    """The Segmentation API in Python: in-process on a home folder, or over HTTP when ``base_url`` is given."""

    RESOURCES: dict[str, builtins.type[Resource]] = {
        "datasets": Datasets,
        "profiles": Profiles,
        "merge_policies": MergePolicies,
        "segment_definitions": SegmentDefinitions,
        "segment_jobs": SegmentJobs,
        "schedules": Schedules,
        "audiences": Audiences,
        "export_jobs": ExportJobs,
        "previews": Previews,
        "estimates": Estimates,
        "external_audiences": ExternalAudiences,
        "search": Search,
        "folders": Folders,
    }

    datasets: Datasets
    profiles: Profiles
    merge_policies: MergePolicies
    segment_definitions: SegmentDefinitions
    segment_jobs: SegmentJobs
    schedules: Schedules
    audiences: Audiences
    export_jobs: ExportJobs
    previews: Previews
    estimates: Estimates
    external_audiences: ExternalAudiences
    search: Search
    folders: Folders

    def __init__(
        self,
        home: Any = None,
        sandbox: str = "prod",
        org_id: str | None = None,
        *,
        base_url: str | None = None,
        token: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        http_client: httpx.Client | None = None,
    ):
        self.sandbox = sandbox
        if base_url is None and http_client is None:
            self.ctx: ServiceContext | None = ServiceContext.create(get_settings(home=home), org_id, sandbox)
            self.transport: Transport = LocalTransport(self.ctx)
        else:
            self.ctx = None
            self.transport = HttpTransport(
                base_url or "", token, api_key, org_id, sandbox, timeout, http_client=http_client
            )
        for name, resource in self.RESOURCES.items():
            setattr(self, name, resource(self.transport))

    @property
    def local(self) -> bool:
        return self.transport.local

    def health(self) -> dict[str, Any]:
        """``GET /health`` over HTTP; in-process, the same check of the catalog."""
        if isinstance(self.transport, HttpTransport):
            return self.transport.request("GET", "/health")
        with self.ctx.catalog.session() as session:
            session.execute(text("SELECT 1"))
        return {
            "status": "ok",
            "version": __version__,
            "catalog": "ok",
            "auth": bool(self.ctx.settings.tokens),
        }

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> SegmentationClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "in-process" if self.local else f"http {self.transport.http.base_url}"
        return f"SegmentationClient({where}, sandbox={self.sandbox!r})"
