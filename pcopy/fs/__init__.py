"""File-system stages: walking trees, marching SRC and DST together, safe operations beneath a root."""
