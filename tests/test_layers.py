"""Lower layers never import higher ones (see the README's module table).

Imports are read with ``ast`` (including imports inside functions), so the
check does not depend on what happens to be loaded at run time. Modules are
named by their dotted path below ``pcopy`` ("fs.scan", "transfer.worker"); a
package's ``__init__`` is named by the package ("content.transforms").
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import pcopy

PACKAGE = pathlib.Path(pcopy.__file__).parent

# low → high; modules on the same rank may not import each other either way round
LAYERS = [
    ["errors", "version", "model", "fs", "content", "runtime", "transfer", "integrity", "mapping", "watcher",
     "remote"],
    ["model.entries"],
    ["model.results", "model.batching", "model.modes"],
    ["fs.beneath"],
    ["runtime.children", "runtime.worker"],
    ["fs.temps", "fs.filters", "fs.scan"],
    ["fs.outputs", "fs.backup", "fs.probe", "runtime.signals", "runtime.progress", "runtime.process", "runtime.inner",
     "runtime.thread", "runtime.dask"],
    ["runtime.backend"],
    ["runtime.pool", "fs.march"],
    ["content.digest", "content.metadata", "content.transforms.base", "content.throttle"],
    ["content.copydata", "content.manifest", "content.transforms.builtins", "content.transforms.stream"],
    ["content.cache", "content.transforms"],
    ["options", "remote.protocol"],
    ["transfer.plan", "transfer.transformed", "transfer.young", "transfer.partial", "transfer.attrs",
     "transfer.renames", "transfer.pieces", "remote.transport", "remote.ops", "remote.send",
     "remote.targets"],
    ["transfer.inplace", "transfer.consumer", "transfer.dirmeta", "transfer.ranges", "remote.resume", "remote.moves"],
    ["transfer.worker"],
    ["transfer.run", "remote.receive"],
    ["remote.dstonly"],
    ["remote.mover"],
    ["transfer.finish", "remote.streams", "remote.sides"],
    ["transfer.engine", "integrity.report", "mapping.worker", "watcher.events", "watcher.observer",
     "remote.flow"],
    ["transfer.sources", "transfer.track", "remote.client"],
    ["integrity.worker", "integrity.sides", "mapping.run", "watcher.local", "remote.watch"],
    ["integrity.session", "watcher.session"],
    ["integrity.tree"],
    ["integrity.manifest", "integrity.compare", "remote.hashing"],
    ["remote.verify_ahead"],
    ["remote.verify", "remote.verify_serve"],
    ["api", "remote.serve"],
    ["cli.output", "cli.argtypes"],
    ["cli.transfer_options", "cli.stats", "cli.jsonlog"],
    ["cli.parser"],
    ["cli.reporter", "cli.completion", "cli.manpage"],
    ["cli.commands"],
    ["cli"],
    ["__main__", "__init__"],
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, path: pathlib.Path, node: ast.ImportFrom) -> list:
    """Dotted pcopy names an ImportFrom refers to (the module, or its submodules for ``from . import x``)."""
    if node.level == 0:
        parts = (node.module or "").split(".")
        if parts[0] != "pcopy":
            return []
        base = parts[1:]
    else:
        here = module.split(".") if path.name == "__init__.py" and module != "__init__" else module.split(".")[:-1]
        if path.name == "__init__.py" and module == "__init__":
            here = []
        up = node.level - 1
        base = (here[:len(here) - up] if up else here) + ((node.module or "").split(".") if node.module else [])
    found = []
    for alias in node.names:
        candidate = ".".join(base + [alias.name])
        found.append(candidate if candidate in MODULES else ".".join(base) or "__init__")
    return found


def pcopy_imports(module: str) -> set:
    """Names of the pcopy modules that ``module`` imports ("__init__" for the package itself)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "pcopy":
                    found.add(".".join(parts[1:]) or "__init__")
        elif isinstance(node, ast.ImportFrom):
            found.update(_resolve(module, path, node))
    found.discard(module)
    return {name for name in found if name in MODULES or name == "__init__"}


def test_every_module_has_a_layer():
    assert set(MODULES) - set(RANK) == set(), "add new modules to LAYERS in tests/test_layers.py"


def test_the_checker_sees_imports():
    """Guard against a checker that silently finds nothing."""
    assert pcopy_imports("transfer.engine") >= {"transfer.worker", "transfer.run", "errors", "runtime.pool",
                                                "model.results"}
    assert pcopy_imports("__main__") >= {"cli"}
    assert pcopy_imports("content.transforms.builtins") >= {"content.transforms.base"}
    assert pcopy_imports("fs.march") >= {"fs.scan", "runtime.children"}


def test_no_file_holds_two_jobs():
    """Files stay under ~400 lines (a bigger one is holding two jobs)."""
    big = {name: n for name, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert big == {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_imports(module):
    rank = RANK.get(module)
    if rank is None:
        pytest.skip(f"{module} has no layer yet (test_every_module_has_a_layer fails for it)")
    upward = {imp: LAYERS[RANK[imp]] for imp in pcopy_imports(module) if RANK.get(imp, -1) >= rank}
    assert upward == {}, f"pcopy/{module} imports modules of its own or a higher layer: {sorted(upward)}"
