"""``python fiu_boot.py ARGS`` = ``python -m pcopy ARGS``, with libfiu points enabled late.

Why: ``fiu-run -c 'enable_random ...'`` arms the failure points before the interpreter
starts, so nearly every run dies in site.py or an import (OSError from importlib, even a
SIGFPE) and says nothing about pcopy. Run under ``fiu-run -x -f ""`` with no -c instead;
this bootstrap first imports the modules a clean run of the same command imported (in the
parent or any forked worker: FC_FIU_IMPORTS), then applies the fiu-run style commands in
FC_FIU_ENABLE (one per line, via libfiu's own fiu_rc_string), then runs pcopy's __main__.

FC_FIU_RECORD=FILE (discovery run, no faults): append every module imported, in any
process, to FILE. A command libfiu rejects exits 96. All FC_FIU_* variables are removed
from the environment before pcopy starts.
"""

import ctypes
import os
import runpy
import sys


def _record(path: str) -> None:
    seen = set()

    def hook(event, args):
        if event == "import" and args[0] not in seen:
            seen.add(args[0])
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, args[0].encode() + b"\n")
            finally:
                os.close(fd)

    sys.addaudithook(hook)


def _preimport(path: str) -> None:
    with open(path) as f:
        names = sorted(set(f.read().split()))
    for name in names:
        if name == "__main__" or name.startswith("pcopy.__main__"):
            continue
        try:
            __import__(name)
        except BaseException:  # noqa: B036 - a module that cannot import here is skipped
            pass


def _enable(commands: str) -> None:
    lib = ctypes.CDLL("libfiu.so.0")
    lib.fiu_rc_string.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
    for command in filter(None, (c.strip() for c in commands.splitlines())):
        error = ctypes.c_char_p()
        if lib.fiu_rc_string(command.encode(), ctypes.byref(error)) != 0:
            os.write(2, b"fiu_boot: libfiu rejected %r: %s\n" % (command.encode(), error.value or b"?"))
            os._exit(96)


def main() -> None:
    record = os.environ.pop("FC_FIU_RECORD", "")
    imports = os.environ.pop("FC_FIU_IMPORTS", "")
    commands = os.environ.pop("FC_FIU_ENABLE", "")
    sys.path[0] = os.getcwd()  # as with -m: the working directory, not this file's
    if record:
        _record(record)
    if imports:
        _preimport(imports)
    if commands:
        _enable(commands)
    sys.argv = ["pcopy", *sys.argv[1:]]
    runpy.run_module("pcopy", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
