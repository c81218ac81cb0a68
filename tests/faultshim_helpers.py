"""pytest glue for the fault shim: the session-scoped ``build_shim`` fixture.

Import it by name into a test module (``from faultshim_helpers import build_shim``);
it compiles tests/faultshim/shim.c once per session and skips (with the reason) when
there is no C compiler. ``shim_env`` is re-exported for convenience.
"""

from __future__ import annotations

import pytest
from faultshim import ShimUnavailable, compile_shim, read_log, rule, shim_env

__all__ = ["build_shim", "read_log", "rule", "shim_env"]


@pytest.fixture(scope="session")
def build_shim(tmp_path_factory) -> str:
    """Path of the compiled shim.so (skips the test when it cannot be built)."""
    try:
        return compile_shim(tmp_path_factory.mktemp("faultshim"))
    except ShimUnavailable as exc:
        pytest.skip(str(exc))
