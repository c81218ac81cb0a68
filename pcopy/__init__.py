"""pcopy: a parallel file-tree copier that checksums what it writes."""

from .api import copytree, hash_tree, verify
from .errors import Interrupted, PcopyError, UsageError
from .model import Report, Result

__version__ = "0.1.0"

__all__ = ["copytree", "hash_tree", "verify", "Interrupted", "PcopyError", "Report", "Result", "UsageError",
           "__version__"]
