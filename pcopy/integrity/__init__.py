"""Integrity: ``hash`` a tree, ``verify`` two trees, check a tree against a manifest."""
