"""The campaign's trees: one SRC built once, and which versions a DST file may hold.

Why: every content check is "each final-named file in DST is byte-for-byte a version we
know" (SRC's, or what was planted in DST before a sync, or a watched file's content before
it changed). Snapshots map relpath -> (kind, digest or link target), so a check is a
dictionary comparison and a hash of DST only.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess

import xxhash

from . import TEMP_PREFIX

MTIME = 1_600_000_000  # a fixed past mtime base: size+mtime skipping is deterministic


def digest_file(path: str) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def small_content(rel: str, n: int) -> bytes:
    return xxhash.xxh3_128(rel.encode()).digest() * (8 + n % 500)


def build_src(root: str, dirs: int = 10, per_dir: int = 20, big: int = 2, big_size: int = 3 << 20) -> None:
    """dirs x per_dir small files, `big` files of big_size, a symlink, a hard-link pair, an empty dir."""
    os.makedirs(root)
    entries = []
    for d in range(dirs):
        os.mkdir(os.path.join(root, f"d{d}"))
        for i in range(per_dir):
            rel = f"d{d}/f{i:03d}.dat"
            with open(os.path.join(root, rel), "wb") as f:
                f.write(small_content(rel, d * per_dir + i))
            entries.append(rel)
    for n in range(big):
        rel = f"big{n}.bin"
        with open(os.path.join(root, rel), "wb") as f:
            f.write(random.Random(n).randbytes(big_size))
        entries.append(rel)
    os.symlink("f000.dat", os.path.join(root, "d0", "link"))
    os.link(os.path.join(root, "d1", "f000.dat"), os.path.join(root, "d1", "hardlink"))
    os.mkdir(os.path.join(root, "empty"))
    for k, rel in enumerate(entries + ["d0/link"]):
        os.utime(os.path.join(root, rel), (MTIME + k, MTIME + k), follow_symlinks=False)
    for k, rel in enumerate(sorted(set(os.path.dirname(e) for e in entries) - {""}) + ["empty", "."]):
        os.utime(os.path.join(root, rel), (MTIME - k, MTIME - k))


def snapshot(root: str) -> dict:
    """{relpath: (kind, digest | link target | None)} of everything below root (no symlink following)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            try:
                mode = os.lstat(path).st_mode
                if stat.S_ISREG(mode):
                    out[rel] = ("file", digest_file(path))
                elif stat.S_ISLNK(mode):
                    out[rel] = ("link", os.readlink(path))
                elif stat.S_ISDIR(mode):
                    out[rel] = ("dir", None)
                else:
                    out[rel] = ("other", None)
            except OSError as exc:  # unreadable (a mode pcopy left): report, do not crash
                out[rel] = ("unreadable", str(exc))
    return out


def is_temp(rel: str) -> bool:
    return os.path.basename(rel).startswith(TEMP_PREFIX)


def copy_tree(src: str, dst: str) -> None:
    subprocess.run(["cp", "-a", "--", src, dst], check=True, timeout=120)


def plant_sync_dst(src: str, dst: str) -> None:
    """DST = an older copy of SRC: some files changed or missing, extras that --delete removes."""
    copy_tree(src, dst)
    for d in range(0, 10, 2):
        rel = f"d{d}/f{d + 1:03d}.dat"
        if os.path.exists(os.path.join(dst, rel)):
            with open(os.path.join(dst, rel), "wb") as f:
                f.write(b"old content of %s\n" % rel.encode())
            os.utime(os.path.join(dst, rel), (MTIME - 999, MTIME - 999))
    for d in range(1, 10, 2):
        path = os.path.join(dst, f"d{d}", f"f{d + 2:03d}.dat")
        if os.path.exists(path):
            os.unlink(path)
    if os.path.exists(os.path.join(dst, "big1.bin")):
        with open(os.path.join(dst, "big1.bin"), "r+b") as f:
            f.write(b"an older big file")
        os.utime(os.path.join(dst, "big1.bin"), (MTIME - 5, MTIME - 5))
    os.makedirs(os.path.join(dst, "extra"))
    for i in range(5):
        with open(os.path.join(dst, "extra", f"x{i}.old"), "wb") as f:
            f.write(b"extra %d\n" % i)
    with open(os.path.join(dst, "d3", "stale.txt"), "wb") as f:
        f.write(b"stale\n")


def unknown_versions(dst_snap: dict, allowed: list) -> list:
    """Final-named DST entries matching none of the `allowed` snapshots."""
    bad = []
    for rel, value in sorted(dst_snap.items()):
        if is_temp(rel):
            continue
        if value[0] == "dir":
            if any(s.get(rel, (None,))[0] == "dir" for s in allowed):
                continue
        elif any(s.get(rel) == value for s in allowed):
            continue
        bad.append(rel)
    return bad


def content_problems(dst_snap: dict, allowed: list) -> list:
    return [f"{rel}: {dst_snap[rel][0]} {dst_snap[rel][1]} is no known version"
            for rel in unknown_versions(dst_snap, allowed)]


def missing(src_snap: dict, dst_snap: dict) -> list:
    """SRC files and symlinks that DST lacks (or holds with different content)."""
    return sorted(rel for rel, value in src_snap.items() if value[0] in ("file", "link") and dst_snap.get(rel) != value)


def extras(src_snap: dict, dst_snap: dict) -> list:
    return sorted(rel for rel in dst_snap if rel not in src_snap and not is_temp(rel))


def temps(snap: dict) -> list:
    return sorted(rel for rel in snap if is_temp(rel))


def tree_diff(src: str, dst: str) -> str:
    """'' when DST equals SRC: rsync -anic --delete (content, kinds, modes, times), else own check."""
    if shutil.which("rsync"):
        proc = subprocess.run(["rsync", "-anic", "--delete", src + "/", dst + "/"], capture_output=True,
                              text=True, errors="replace", timeout=120)
        return proc.stdout + (proc.stderr if proc.returncode else "")
    a, b = snapshot(src), snapshot(dst)
    return "\n".join(f"{k}: {a.get(k)} != {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


MAP_HELPER = '''"""pcopy map helper for the fault campaign: the size of a file (an ordinary stat)."""
import os


def size(path):
    return os.path.getsize(path)
'''


def write_map_helper(directory: str) -> str:
    """Write fcmap.py into directory; return the FUNCTION argument for pcopy map."""
    with open(os.path.join(directory, "fcmap.py"), "w") as f:
        f.write(MAP_HELPER)
    return "fcmap:size"
