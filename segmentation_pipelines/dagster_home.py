"""The Dagster instance folder (DAGSTER_HOME) of a home folder, and which ``dagster.yaml`` it runs on.

Two instance configurations ship with the project: the top-level ``dagster.yaml`` (embedded default: SQLite under
DAGSTER_HOME) and ``deploy/postgres/dagster.yaml`` (dagster-postgres at ``$DAGSTER_PG_URL``). Setting
``DAGSTER_PG_URL`` selects the second; :func:`prepare_dagster_home` copies the selected file into
``settings.dagster_home`` so that every process (webserver, daemon, run workers, REST API) reads the same one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from segmentation_pipelines.settings import Settings

PG_URL_ENV = "DAGSTER_PG_URL"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "dagster.yaml"
POSTGRES_CONFIG = PROJECT_ROOT / "deploy" / "postgres" / "dagster.yaml"


def selected_config(env: Mapping[str, str] | None = None) -> Path:
    """The instance configuration to use: PostgreSQL when ``DAGSTER_PG_URL`` is set, else the embedded default."""
    env = os.environ if env is None else env
    pg_url = env.get(PG_URL_ENV, "").strip()
    if not pg_url:
        return DEFAULT_CONFIG
    if not pg_url.startswith("postgresql+psycopg2://"):
        # SQLAlchemy 2.1 maps postgresql:// to psycopg 3, which dagster-postgres does not install: fail here, clearly.
        raise ValueError(
            f"{PG_URL_ENV} must start with 'postgresql+psycopg2://' (got '{pg_url.split('://', 1)[0]}://...')."
        )
    return POSTGRES_CONFIG


def prepare_dagster_home(settings: Settings, env: Mapping[str, str] | None = None) -> Path:
    """Create ``settings.dagster_home`` holding the selected ``dagster.yaml``; return the folder."""
    source = selected_config(env)
    if not source.is_file():
        raise FileNotFoundError(
            f"Dagster instance configuration {source} not found: install the project from its source tree "
            "(pip install -e .)."
        )
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.is_file() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    return home


def dagster_env(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A process environment whose DAGSTER_HOME is the prepared instance folder of ``settings``."""
    base = dict(os.environ if env is None else env)
    base["DAGSTER_HOME"] = str(prepare_dagster_home(settings, base))
    base["SEGMENTATION_HOME"] = str(settings.home)
    return base
