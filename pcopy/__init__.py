"""pcopy: a parallel file-tree copier that checksums what it writes."""

from .api import copytree, map_files
from .errors import Interrupted, PcopyError, UsageError
from .mapping import MapResult
from .model import Report, Result

__version__ = "0.1.0"

__all__ = ["copytree", "Interrupted", "MapResult", "PcopyError", "Report", "Result", "UsageError", "__version__",
           "map_files"]
