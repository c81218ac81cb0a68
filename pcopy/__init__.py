"""pcopy: a parallel file-tree copier that checksums what it writes."""

from .api import copytree, hash_tree, map_files, sync, verify, watch
from .errors import Interrupted, PcopyError, UsageError
from .integrity.report import IntegrityReport
from .mapping.worker import MapResult
from .model.results import Report, Result
from .version import __version__

__all__ = ["copytree", "sync", "watch", "hash_tree", "verify", "map_files", "Interrupted", "IntegrityReport",
           "MapResult", "PcopyError", "Report", "Result", "UsageError", "__version__"]
