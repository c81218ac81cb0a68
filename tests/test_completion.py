"""``pcopy completion SHELL``: the scripts parse in their shell and really complete.

bash is always there; zsh and fish tests skip when the shell is not installed
(``.ci/run`` installs both).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys

import pytest

from pcopy.cli import main
from pcopy.cli.completion import completion_script
from pcopy.cli.parser import COMPLETION_SHELLS, build_parser

COMMANDS = [name for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)
            for name in action.choices]


def _needs(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed (apt-get install {shell})")
    return path


def _bash_complete(tmp_path, words: list, cwd=None) -> list:
    """COMPREPLY of the generated bash function for a command line whose last word is being completed."""
    script = tmp_path / "pcopy.bash"
    script.write_text(completion_script("bash"))
    function = re.search(r"^complete .*-F (\S+) pcopy$", script.read_text(), re.M)
    assert function, "the script registers no completion function for pcopy"
    array = " ".join(f"'{w}'" for w in words)
    program = (f"source '{script}'; COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; "
               f"COMP_LINE='{' '.join(words)}'; COMP_POINT=${{#COMP_LINE}}; "
               f"{function.group(1)} pcopy '{words[-1]}' '{words[-2]}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_script_parses_and_registers_pcopy(tmp_path):
    script = tmp_path / "pcopy.bash"
    script.write_text(completion_script("bash"))
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    text = script.read_text()
    assert re.search(r"^complete .*-F \S+ pcopy$", text, re.M)
    for name in COMMANDS + ["--delete", "--link-dest", "--transform"]:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), name


def test_bash_completes_commands_and_options(tmp_path):
    assert _bash_complete(tmp_path, ["pcopy", "sy"]) == ["sync"]
    assert sorted(_bash_complete(tmp_path, ["pcopy", ""])) == sorted(COMMANDS)
    assert "--delete" in _bash_complete(tmp_path, ["pcopy", "sync", "--del"])
    assert "--delete" not in _bash_complete(tmp_path, ["pcopy", "copy", "--del"])
    assert _bash_complete(tmp_path, ["pcopy", "hash", "--algo", ""]) == ["xxh128", "sha256"]
    assert _bash_complete(tmp_path, ["pcopy", "completion", "f"]) == ["fish"]


def test_bash_completes_directories_for_src_and_files_for_file_options(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photo-list.txt").write_text("x")
    assert _bash_complete(tmp_path, ["pcopy", "copy", "pho"], cwd=tmp_path) == ["photos"]
    assert sorted(_bash_complete(tmp_path, ["pcopy", "copy", "a", "b", "--manifest", "pho"], cwd=tmp_path)) == [
        "photo-list.txt", "photos"]


def test_zsh_script_parses(tmp_path):
    zsh = _needs("zsh")
    script = tmp_path / "_pcopy"
    script.write_text(completion_script("zsh"))
    done = subprocess.run([zsh, "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    text = script.read_text()
    assert text.startswith("#compdef pcopy")
    for name in COMMANDS + ["--delete"]:
        assert name in text


def test_fish_script_parses_and_completes(tmp_path):
    fish = _needs("fish")
    script = tmp_path / "pcopy.fish"
    script.write_text(completion_script("fish"))
    done = subprocess.run([fish, "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr

    def complete(line: str) -> list:
        ran = subprocess.run([fish, "--no-config", "-c", f"source '{script}'; complete -C '{line}'"],
                             capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
        return [row.split("\t")[0] for row in ran.stdout.splitlines()]

    assert complete("pcopy sy") == ["sync"]
    assert set(complete("pcopy ")) >= set(COMMANDS)
    assert "--delete" in complete("pcopy sync --del")
    assert "--delete" not in complete("pcopy copy --del")


def test_the_command_prints_the_script(capsys):
    assert main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert "pcopy" in out and out.endswith("\n")


def test_every_offered_shell_has_a_script():
    for shell in COMPLETION_SHELLS:
        assert "pcopy" in completion_script(shell)


def test_an_unknown_shell_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["completion", "csh"])
    assert stop.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_start_up_does_not_import_the_generators():
    """shtab is imported only by ``pcopy completion``: every other command starts as fast as before."""
    probe = ("import sys; from pcopy.cli import commands, parser; parser.build_parser(); "
             "print(sorted(m for m in ('shtab', 'argparse_manpage') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
