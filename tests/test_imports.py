"""The import structure of ``docs/architecture.md``, checked: the layers and forbidden imports declared in
``pyproject.toml`` (``[tool.importlinter]``, run by import-linter), and no import cycle between the package's modules
(the graph built by grimp, imports inside functions included; ``TYPE_CHECKING`` imports are not imports)."""

from __future__ import annotations

import graphlib
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_imports_follow_the_layers():
    # Prints each broken contract with the chain of imports that breaks it.
    assert lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True) == 0


def test_no_import_cycles():
    graph = grimp.build_graph("segmentation_pipelines", exclude_type_checking_imports=True)
    sorter = graphlib.TopologicalSorter(
        {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    )
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        pytest.fail("import cycle: " + " -> ".join(error.args[1]))
