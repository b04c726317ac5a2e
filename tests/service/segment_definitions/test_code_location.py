"""The code-location reload after definition writes: a no-op without a webserver, debounced to one reload per
burst, never an error with the webserver failing. Observed from outside: the requests a webserver receives, and the
warnings logged."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from running import free_port

from segmentation_pipelines import code_location
from segmentation_pipelines.settings import Settings


@pytest.fixture
def failing_webserver():
    """A webserver that records each GraphQL POST and answers 500 (a Dagster webserver in trouble)."""
    posts: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            posts.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", posts
    server.shutdown()


def _reload_warnings(caplog) -> list[str]:
    return [r.message for r in caplog.records if "reloading code location" in r.message]


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_no_webserver_configured_means_no_reload(settings, caplog):
    with caplog.at_level(logging.WARNING, logger=code_location.__name__):
        code_location.request_reload(settings)
        time.sleep(code_location.DEBOUNCE_SECONDS * 3)
    assert _reload_warnings(caplog) == []
    assert not any(t.name == "code-location-reload" for t in threading.enumerate())


def test_unreachable_webserver_is_logged_not_raised(caplog):
    with caplog.at_level(logging.WARNING, logger=code_location.__name__):
        assert code_location.reload_now(f"http://127.0.0.1:{free_port()}", "segmentation_pipelines") is False
    assert len(_reload_warnings(caplog)) == 1


def test_a_burst_of_writes_is_one_reload(tmp_path, caplog, failing_webserver):
    url, posts = failing_webserver
    settings = Settings(home=tmp_path / "h", dagster_url=url)
    with caplog.at_level(logging.WARNING, logger=code_location.__name__):
        for _ in range(5):
            code_location.request_reload(settings)
        _wait_for(lambda: _reload_warnings(caplog))
        time.sleep(code_location.DEBOUNCE_SECONDS * 3)
        assert len(_reload_warnings(caplog)) == 1
        assert posts and all(b"reloadRepositoryLocation" in p for p in posts)
        # A write after the burst is a reload of its own.
        code_location.request_reload(settings)
        _wait_for(lambda: len(_reload_warnings(caplog)) == 2)
    assert len(_reload_warnings(caplog)) == 2
