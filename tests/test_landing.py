"""The landing-area rule: a confined caller names only files inside its sandbox's landing folder, and every refusal
reads the same (it tells nothing about the server's file system)."""

from __future__ import annotations

import pytest

from segmentation_pipelines.errors import BadRequest
from segmentation_pipelines.landing import files_under, landing_dir, resolve_path


@pytest.fixture
def landing(tmp_path):
    root = landing_dir(tmp_path / "landing", "acme@AdobeOrg", "prod")
    (root / "in").mkdir(parents=True)
    (root / "in" / "a.csv").write_text("x\n1\n")
    (root / "in" / ".hidden.csv").write_text("x\n")
    secret = tmp_path / "secret.csv"
    secret.write_text("password\n")
    (root / "in" / "link.csv").symlink_to(secret)
    return root


def test_relative_and_absolute_paths_inside_resolve(landing):
    assert resolve_path("in/a.csv", landing, confined=True) == (landing / "in" / "a.csv").resolve()
    assert resolve_path(str(landing / "in" / "a.csv"), landing, confined=True).name == "a.csv"
    assert resolve_path("in", landing, confined=True, kind="folder") == (landing / "in").resolve()


@pytest.mark.parametrize(
    "raw",
    [
        "../../secret.csv",
        "in/../../../secret.csv",
        "in/link.csv",
        "/etc/passwd",
        "missing.csv",
        "in",
        "a\x00b",
    ],
)
def test_confined_refusals_all_read_alike(landing, raw):
    with pytest.raises(BadRequest) as err:
        resolve_path(raw, landing, confined=True)
    message = err.value.body["errors"]["400"][0]["message"]
    assert "is not a file in this sandbox's landing area" in message
    assert "exist" not in message and "permission" not in message.lower()


def test_unconfined_caller_may_name_its_own_files(landing, tmp_path):
    assert resolve_path(str(tmp_path / "secret.csv"), landing, confined=False).name == "secret.csv"


def test_folder_listing_skips_hidden_and_escaping_links(landing):
    assert [p.name for p in files_under(landing / "in", (".csv",), landing, confined=True)] == ["a.csv"]
    assert sorted(p.name for p in files_under(landing / "in", (".csv",), landing, confined=False)) == [
        "a.csv",
        "secret.csv",
    ]
