"""The sdist carries the tests, scripts, license and type marker, and the suite runs from it;
the wheel built from that sdist ships ``py.typed``.

Built with ``python -m build --no-isolation`` (the ``build``, ``setuptools`` and ``wheel``
of the test extra), so no build environment is fetched; skipped without ``build``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                     ".hypothesis", ".mypy_cache", ".ruff_cache")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    pytest.importorskip("build", reason="the test extra's 'build' package builds the sdist")
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES, symlinks=True)  # the build writes egg-info beside setup.cfg
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"), "."],
                          cwd=source, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sdist, = (work / "dist").glob("pcopy-*.tar.gz")
    wheel, = (work / "dist").glob("pcopy-*.whl")  # build makes the wheel from the sdist
    return {"work": work, "sdist": sdist, "wheel": wheel}


def test_sdist_holds_what_the_suite_needs(built):
    with tarfile.open(built["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("tests/conftest.py", "tests/test_exported_members.py", "tests/faultshim/shim.c",
                   "tests/faultshim/wrappers.h", "tests/faultcampaign/campaign.py", "scripts/test", "scripts/check",
                   "README.md", "LICENSE", "pcopy/py.typed", "setup.cfg", "pyproject.toml"):
        assert needed in names, needed
    assert not any("__pycache__" in name or name.startswith(".ci/") for name in names)


def test_the_suite_runs_from_the_unpacked_sdist(built):
    unpacked = built["work"] / "unpacked"
    with tarfile.open(built["sdist"]) as archive:
        if sys.version_info >= (3, 12):
            archive.extractall(unpacked, filter="data")
        else:
            archive.extractall(unpacked)
    top, = unpacked.iterdir()
    env = dict(os.environ, PYTHONPATH=str(top))
    where = subprocess.run([sys.executable, "-c", "import pcopy; print(pcopy.__file__)"], env=env, cwd=top,
                           capture_output=True, text=True, timeout=60)
    assert pathlib.Path(where.stdout.strip()).is_relative_to(top), "the sdist's pcopy was not the one imported"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_exported_members.py"], env=env, cwd=top, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout


def test_wheel_from_the_sdist_ships_the_type_marker_and_license(built):
    with zipfile.ZipFile(built["wheel"]) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "pcopy/py.typed" in names
    assert "pcopy/cli/completion.py" in names and "pcopy/cli/manpage.py" in names
    assert any(n.endswith(".dist-info/LICENSE") or n.endswith("licenses/LICENSE") for n in names)
    assert "Requires-Dist: shtab" in metadata
    assert not any(n.startswith("tests/") for n in names)


def test_wheel_ships_every_module_of_the_source_tree(built):
    """A directory without ``__init__.py`` is a namespace package that ``find:`` leaves out of the
    wheel: the installed pcopy then fails with ModuleNotFoundError while the checkout works."""
    with zipfile.ZipFile(built["wheel"]) as archive:
        names = set(archive.namelist())
    sources = {path.relative_to(ROOT).as_posix() for path in (ROOT / "pcopy").rglob("*.py")
               if "__pycache__" not in path.parts}
    assert sources, "no sources found"
    assert sorted(sources - names) == []


def test_a_copy_runs_from_the_installed_wheel(built, tmp_path):
    """Installed (not editable, not on PYTHONPATH), ``python -m pcopy copy`` copies a tree."""
    site = tmp_path / "site"
    with zipfile.ZipFile(built["wheel"]) as archive:
        archive.extractall(site)  # a wheel is its install layout; the dependencies come from this Python
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"data")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run([sys.executable, "-m", "pcopy", "copy", "-q", str(src), str(tmp_path / "dst")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "dst" / "sub" / "f").read_bytes() == b"data"
    where = subprocess.run([sys.executable, "-c", "import pcopy.transfer.engine as e; print(e.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert pathlib.Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
