"""pcopy: a parallel file-tree copier that checksums what it writes."""

from .api import copytree, sync, watch
from .errors import Interrupted, PcopyError, UsageError
from .model import Report, Result
from .version import __version__

__all__ = ["copytree", "sync", "watch", "Interrupted", "PcopyError", "Report", "Result", "UsageError", "__version__"]
