"""SegmentationClient behaves the same in-process and over HTTP (a real uvicorn server): one suite, both modes."""

from __future__ import annotations

import pytest
from api._apps import TEST_PREFIX, ItemsService, make_app, running_server

from segmentation_pipelines import ApiError, SegmentationClient, SegmentationError
from segmentation_pipelines.client import JobResource, LocalTransport, Resource, op

CONTRACT_RESOURCES = (
    "segment_definitions",
    "segment_jobs",
    "schedules",
    "export_jobs",
    "audiences",
    "previews",
    "estimates",
    "external_audiences",
    "search",
    "datasets",
    "profiles",
)


class Items(Resource):
    """The test resource, declared like the real ones."""

    service = "items"
    prefix = TEST_PREFIX
    create = op("POST /items", "body")
    list = op("GET /items", query=True)
    get = op("GET /items/{id}", "id")
    delete = op("DELETE /items/{id}", "id")


class Jobs(Items, JobResource):
    """Items read as jobs: ``status`` ends in ``done``."""

    ended = frozenset({"done"})
    what = "Item job"


class ItemsLocalTransport(LocalTransport):
    def service(self, name):
        return ItemsService(self.ctx) if name == "items" else super().service(name)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from segmentation_pipelines.settings import Settings

    settings = Settings(home=tmp_path_factory.mktemp("server") / "home", catalog_url=None, api_tokens="tok-1")
    with running_server(make_app(settings)) as base_url:
        yield base_url


@pytest.fixture(params=["local", "http"])
def connect(request, tmp_path, server):
    """``connect(sandbox)`` -> a client in that sandbox, in-process or over HTTP (one home per test)."""
    clients = []

    def make(sandbox: str = "prod") -> SegmentationClient:
        if request.param == "local":
            client = SegmentationClient(home=tmp_path / "home", sandbox=sandbox)
            client.transport = ItemsLocalTransport(client.ctx)
        else:
            client = SegmentationClient(base_url=server, token="tok-1", sandbox=sandbox)
        client.items = Items(client.transport)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_client_exposes_the_contract_resources(connect):
    client = connect()
    for name in CONTRACT_RESOURCES:
        resource = getattr(client, name)
        assert isinstance(resource, Resource), name
        assert resource.operations(), name
    assert callable(client.segment_definitions.create) and callable(client.profiles.get)


def test_health(connect):
    health = connect().health()
    assert health["status"] == "ok" and health["catalog"] == "ok"


def test_create_get_list_delete_roundtrip(connect):
    client = connect("a")
    created = client.items.create({"name": "first", "tags": ["x"]})
    assert created["name"] == "first" and created["tags"] == ["x"]
    assert created["sandbox"]["sandboxName"] == "a"
    assert client.items.get(created["id"]) == created
    assert client.items.get(id=created["id"]) == created
    listed = client.items.list()
    assert [c["id"] for c in listed["children"]] == [created["id"]]
    assert client.items.delete(created["id"]) is None
    with pytest.raises(SegmentationError) as info:
        client.items.get(created["id"])
    assert info.value.status == 404


def test_resource_created_in_one_sandbox_is_404_in_another(connect):
    item = connect("a").items.create({"name": "mine"})
    with pytest.raises(SegmentationError) as info:
        connect("b").items.get(item["id"])
    assert info.value.status == 404
    assert item["id"] in info.value.message
    assert info.value.body["errors"]["404"][0]["code"] == "UPAPI-113430-404"
    assert connect("b").items.list()["children"] == []


def test_query_parameters_arrive_as_strings_in_both_modes(connect):
    listed = connect().items.list(limit=5, flag=True, name="x y", skipped=None)
    assert listed["query"] == {"limit": "5", "flag": "true", "name": "x y"}


def test_service_errors_carry_status_and_aep_body(connect):
    with pytest.raises(SegmentationError) as info:
        connect().items.create({"name": ""})
    error = info.value
    assert error.status == 400
    assert "'name'" in error.message
    assert set(error.body) == {"requestId", "errors", "type", "title", "status"}
    assert error.body["status"] == 400


def test_path_arguments_are_escaped(connect):
    with pytest.raises(SegmentationError) as info:
        connect().items.get("x y?c=d#e&f%2F")
    assert info.value.status == 404
    assert "'x y?c=d#e&f%2F'" in info.value.message  # reached the service intact, not another route


def test_wrong_arguments_raise_type_error_before_any_call(connect):
    client = connect()
    with pytest.raises(TypeError, match="missing required"):
        client.items.get()
    with pytest.raises(TypeError, match="unexpected keyword"):
        client.items.get("x", color="red")
    with pytest.raises(TypeError, match="takes 1 arguments"):
        client.items.get("x", "y")


def test_http_client_without_token_gets_401(server):
    with SegmentationClient(base_url=server, sandbox="prod") as client:
        items = Items(client.transport)
        with pytest.raises(SegmentationError) as info:
            items.list()
    assert info.value.status == 401
    assert info.value.code == "UPAPI-113401-401"


def test_unreachable_server_is_a_segmentation_error():
    from running import free_port

    with SegmentationClient(base_url=f"http://127.0.0.1:{free_port()}", timeout=5) as client:
        with pytest.raises(SegmentationError) as info:
            client.health()
    assert info.value.status == 503


def test_local_service_errors_are_api_errors(tmp_path):
    client = SegmentationClient(home=tmp_path / "home")
    client.transport = ItemsLocalTransport(client.ctx)
    with pytest.raises(ApiError):
        Items(client.transport).get("missing")


def test_every_client_resource_has_its_service_in_process(tmp_path):
    """A missing feature is a route that does not exist, not a 501: every resource the client declares is wired."""
    client = SegmentationClient(home=tmp_path / "home")
    for name in vars(client):
        resource = getattr(client, name)
        if isinstance(resource, Resource):
            service = client.transport.service(resource.service)
            for op_name, operation in resource.operations().items():
                assert callable(getattr(service, operation.service_method, None)), f"{name}.{op_name}"


def test_datasets_end_to_end(connect):
    client = connect("a")
    created = client.datasets.create({"name": "crm", "xdmClass": "_xdm.context.profile"})
    dataset_id = created["id"]
    assert created["name"] == "crm" and created["xdmClass"] == "_xdm.context.profile"
    fetched = client.datasets.get(dataset_id)
    assert fetched["id"] == dataset_id and fetched["batchCount"] == 0
    assert dataset_id in client.datasets.list()
    assert dataset_id in client.datasets.list(xdmClass="_xdm.context.profile")
    assert dataset_id not in client.datasets.list(xdmClass="_xdm.context.experienceevent")
    assert client.datasets.batches(dataset_id) == {}

    other = connect("b")
    with pytest.raises(SegmentationError) as info:
        other.datasets.get(dataset_id)
    assert info.value.status == 404
    assert dataset_id not in other.datasets.list()

    with pytest.raises(SegmentationError) as info:
        client.datasets.create({"name": "no class"})
    assert info.value.status == 400 and "xdmClass" in info.value.message

    assert client.datasets.delete(dataset_id) is None
    with pytest.raises(SegmentationError) as info:
        client.datasets.get(dataset_id)
    assert info.value.status == 404


def test_a_job_resource_waits_until_its_job_ends_and_names_it_on_timeout(connect):
    client = connect()
    jobs = Jobs(client.transport)
    done = jobs.create({"name": "a", "status": "done"})
    assert jobs.wait(done["id"], timeout=5, poll=0.05)["status"] == "done"
    running = jobs.create({"name": "b", "status": "running"})
    with pytest.raises(TimeoutError, match=f"Item job {running['id']} did not end within 0.2 s"):
        jobs.wait(running["id"], timeout=0.2, poll=0.05)
