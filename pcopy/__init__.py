"""pcopy: a parallel file-tree copier that checksums what it writes.

The public names are imported on first use (PEP 562), so ``python -m pcopy``
and ``import pcopy.cli`` start without loading every stage.
"""

from importlib import import_module as _import_module

from .version import __version__

_EXPORTS = {
    "copytree": "api", "sync": "api", "watch": "api", "hash_tree": "api", "verify": "api", "map_files": "api",
    "Interrupted": "errors", "PcopyError": "errors", "UsageError": "errors",
    "MapResult": "mapping.worker", "Report": "model.results", "Result": "model.results",
    "IntegrityReport": "integrity.report",
}

__all__ = ["copytree", "sync", "watch", "hash_tree", "verify", "map_files", "Interrupted", "IntegrityReport",
           "MapResult", "PcopyError", "Report", "Result", "UsageError", "__version__"]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pcopy' has no attribute {name!r}")
    value = getattr(_import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
