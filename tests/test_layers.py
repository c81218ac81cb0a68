"""Lower layers never import higher ones (see the design notes' module table).

Imports are read with ``ast`` (including imports inside functions), so the
check does not depend on what happens to be loaded at run time.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import pcopy

PACKAGE = pathlib.Path(pcopy.__file__).parent

# low → high; modules on the same rank may not import each other either way round
LAYERS = [
    ["errors", "version"],
    ["model", "filters", "transforms"],
    ["walk", "hashing"],
    ["cache"],
    ["plan", "lister"],
    ["fsops"],
    ["dask_backend"],
    ["pool"],
    ["progress"],
    ["engine"],
    ["watcher", "mapping", "integrity"],
    ["api"],
    ["cli"],
    ["__main__", "__init__"],
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))


def pcopy_imports(module: str) -> set:
    """Names of the pcopy modules that ``module`` imports ("__init__" for the package itself)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "pcopy":
                    found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "pcopy":
                    continue
                rest = parts[1:]
            elif node.level == 1:
                rest = node.module.split(".") if node.module else []
            else:  # pragma: no cover - pcopy has no subpackages
                continue
            if rest:
                found.add(rest[0])
            else:  # "from . import x": a submodule, or a name defined in __init__
                for alias in node.names:
                    found.add(alias.name if (PACKAGE / f"{alias.name}.py").exists() else "__init__")
    found.discard(module)
    return found


def test_every_module_has_a_layer():
    assert set(MODULES) - set(RANK) == set(), "add new modules to LAYERS in tests/test_layers.py"


def test_the_checker_sees_imports():
    """Guard against a checker that silently finds nothing."""
    assert pcopy_imports("engine") >= {"fsops", "walk", "errors", "plan", "pool", "model"}
    assert pcopy_imports("__init__") >= {"api", "errors", "model"}


@pytest.mark.parametrize("module", MODULES)
def test_no_upward_imports(module):
    rank = RANK.get(module)
    if rank is None:
        pytest.skip(f"{module} has no layer yet (test_every_module_has_a_layer fails for it)")
    # imports of modules without a layer are reported by test_every_module_has_a_layer
    upward = {imp: LAYERS[RANK[imp]] for imp in pcopy_imports(module) if RANK.get(imp, -1) >= rank}
    assert upward == {}, f"pcopy/{module}.py imports modules of its own or a higher layer: {sorted(upward)}"
