"""The code-location reload after definition writes: a no-op without a webserver, never an error with one down."""

from __future__ import annotations

import logging
import socket
import time

from segmentation_pipelines import code_location
from segmentation_pipelines.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_webserver_configured_means_no_reload(settings):
    code_location.request_reload(settings)
    assert code_location._pending == {}


def test_unreachable_webserver_is_logged_not_raised(tmp_path, caplog):
    url = f"http://127.0.0.1:{free_port()}"
    assert code_location.reload_now(url, "segmentation_pipelines") is False
    settings = Settings(home=tmp_path / "h", dagster_url=url)
    with caplog.at_level(logging.WARNING, logger=code_location.__name__):
        for _ in range(5):  # a burst of writes: one reload
            code_location.request_reload(settings)
        assert len(code_location._pending) == 1
        deadline = time.monotonic() + 30
        while code_location._pending and time.monotonic() < deadline:
            time.sleep(0.1)
    assert code_location._pending == {}
    assert any("reloading code location" in r.message for r in caplog.records)
