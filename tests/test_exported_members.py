"""The public API is exactly what ``pcopy.__all__`` says (after httpx's test of the same name)."""

from __future__ import annotations

import types

import pcopy


def test_all_names_exist():
    missing = [name for name in pcopy.__all__ if not hasattr(pcopy, name)]
    assert missing == []
    assert len(set(pcopy.__all__)) == len(pcopy.__all__)


def test_public_names_are_exported():
    public = {name for name, value in vars(pcopy).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert public, "pcopy exposes nothing?"
    assert public - set(pcopy.__all__) == set()


def test_exported_objects_say_they_come_from_pcopy():
    for name in pcopy.__all__:
        value = getattr(pcopy, name)
        if isinstance(value, (type, types.FunctionType)):
            assert value.__module__.startswith("pcopy."), name


def test_version_is_a_string():
    assert isinstance(pcopy.__version__, str) and pcopy.__version__.count(".") >= 1


def test_errors_know_their_exit_codes():
    assert pcopy.PcopyError.exit_code == 1
    assert pcopy.UsageError.exit_code == 2
    assert issubclass(pcopy.UsageError, pcopy.PcopyError)
    assert issubclass(pcopy.Interrupted, KeyboardInterrupt) and not issubclass(pcopy.Interrupted, Exception)
    assert pcopy.Interrupted(2).exit_code == 130 and pcopy.Interrupted(15).exit_code == 143
