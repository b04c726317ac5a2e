"""Every backend implements every hook of the lowering's ``Backend`` protocol, and the lowering calls exactly the
hooks the protocol declares."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from segmentation_pipelines.pql import lowering
from segmentation_pipelines.pql.compile_polars import PolarsBackend
from segmentation_pipelines.pql.compile_spark import SparkBackend
from segmentation_pipelines.pql.compile_sql import SqlBackend
from segmentation_pipelines.pql.lowering.backend import Backend

HOOKS = sorted(Backend.__abstractmethods__)


@pytest.mark.parametrize("cls", [SqlBackend, SparkBackend, PolarsBackend])
def test_each_backend_implements_every_hook(cls: type) -> None:
    assert issubclass(cls, Backend)
    backend = cls()  # an abstract hook left unimplemented would make this a TypeError
    assert isinstance(backend, Backend)
    for name in HOOKS:
        own = getattr(cls, name)
        assert own is not getattr(Backend, name), f"{cls.__name__} does not implement {name}"
        declared = inspect.signature(getattr(Backend, name)).parameters
        assert list(inspect.signature(own).parameters) == list(declared), f"{cls.__name__}.{name}"


def test_a_backend_missing_a_hook_cannot_be_built() -> None:
    hooks = {name: getattr(SqlBackend, name) for name in HOOKS if name != "chain"}
    partial = type("Partial", (Backend,), hooks)
    with pytest.raises(TypeError, match="chain"):
        partial()


def test_the_lowering_calls_only_declared_hooks() -> None:
    folder = Path(lowering.__file__).parent
    sources = [p.read_text() for p in folder.glob("*.py")]
    called = {m for s in sources for m in re.findall(r"\b(?:self\.b|b)\.([a-z_]+)\(", s)}
    assert called, "no hook call found: the pattern no longer matches the lowering's calls"
    assert called <= set(HOOKS), sorted(called - set(HOOKS))
    assert set(HOOKS) <= called, f"declared but never called: {sorted(set(HOOKS) - called)}"
