"""Filters: gitignore semantics shared by sync, map and watch."""

import pytest

from pcopy.fs.filters import make_filter


@pytest.mark.parametrize("pattern, path, is_dir, excluded", [
    ("*.log", "a.log", False, True),
    ("*.log", "deep/er/a.log", False, True),
    ("*.log", "a.log.txt", False, False),
    ("build/", "x/build", True, True),
    ("build/", "x/build", False, False),
    ("/top", "top", False, True),
    ("/top", "sub/top", False, False),
    ("docs/*.md", "docs/a.md", False, True),
    ("docs/*.md", "docs/sub/a.md", False, False),
    ("docs/**/*.md", "docs/sub/a.md", False, True),
    ("docs/**/*.md", "docs/a.md", False, True),
    ("**/cache", "a/b/cache", True, True),
    ("f?o", "foo", False, True),
    ("f[0-9]", "f7", False, True),
    ("f[!0-9]", "f7", False, False),
    ("# comment", "# comment", False, False),
    ("\\#literal", "#literal", False, True),
])
def test_gitignore_rules(pattern, path, is_dir, excluded):
    keep = make_filter([pattern])
    if pattern.startswith("#"):
        assert keep is None  # a comment is no pattern
    else:
        assert keep(path, is_dir) is (not excluded)


def test_negation_last_match_wins():
    keep = make_filter(["*.log", "!keep.log"])
    assert not keep("a.log", False) and keep("keep.log", False)
    assert make_filter(["", "# only a comment"]) is None


def test_excluded_directory_pattern_matches_only_directories():
    keep = make_filter(["cache/"])
    assert not keep("a/cache", True) and keep("a/cache", False)
