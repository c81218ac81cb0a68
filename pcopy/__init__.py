"""pcopy: a parallel file-tree copier that checksums what it writes."""

from .api import copytree, map_files, sync
from .errors import Interrupted, PcopyError, UsageError
from .mapping import MapResult
from .model import Report, Result
from .version import __version__

__all__ = ["copytree", "sync", "map_files", "Interrupted", "MapResult", "PcopyError", "Report", "Result",
           "UsageError", "__version__"]
