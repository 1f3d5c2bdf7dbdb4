"""The inputs of a batch run, walked lazily, and the output name of each: unique, stable and safe to write.

Inputs are files, folders (searched recursively) and lists of paths (`--from-list FILE|-`). Nothing is listed into
memory first: folders are walked with `os.scandir`, depth first, each folder's first 100,000 entries in name order
and any further ones in the file system's order (stable between runs and between the ranks of one job on one file
system), so a folder of a million files starts at once and costs the memory of 100,000 names at most. Symbolic links to folders are followed once (a link loop is walked once); the output
folder and camloc's own temporary files are never taken as inputs.

Output names keep the folder structure below the inputs' common folder (`c/a/x.jpg` and `c/b/x.jpg` give `a/x` and
`b/x`), drop the suffix unless a sibling shares the stem (`x.jpg` + `x.png` give `x.jpg` and `x.png`), and replace a
component too long for the file system by a shortened one with a hash of the whole: two inputs never share a name.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from camloc.errors import InputError
from camloc.io import IMAGE_SUFFIXES

# A file name component longer than this (in UTF-8 bytes) is shortened: outputs add up to 30 bytes of suffixes and
# the temporary names of atomic writes another 20, and most file systems allow 255.
MAX_NAME_BYTES = 180
# Entries of one folder walked in name order; a larger folder goes on in the file system's order (stable between
# runs and ranks on one file system), so memory stays bounded.
SORTED_ENTRIES = 100_000
_SUFFIX_VARIANTS = sorted({s for suffix in IMAGE_SUFFIXES for s in (suffix, suffix.upper())})


@dataclass(frozen=True)
class Source:
    """One input file and the name its outputs get (relative, '/'-separated, no suffix)."""

    path: Path
    name: str


def is_temporary(name: str) -> bool:
    """camloc's own half-written files (`camloc.io.atomic_path`): `.<name>.<random>.tmp<suffix>`."""
    return name.startswith(".") and ".tmp" in name


def walk_images(folder: Path, exclude: Sequence[Path] = ()) -> Iterator[Path]:
    """Image files under `folder` (by suffix), lazily and depth first; `exclude` folders are skipped.

    Unreadable sub-folders are skipped with no error (a whole-archive walk must not stop on one of them);
    the folder itself must be readable.
    """
    skip = {_dir_key(p) for p in exclude if p.is_dir()}
    seen: set[tuple[int, int]] = set()
    root_key = _dir_key(folder)
    seen.add(root_key)
    stack = [_entries(folder)]
    try:
        while stack:
            try:
                entry = next(stack[-1])
            except StopIteration:
                stack.pop().close()
                continue
            except OSError:
                stack.pop().close()
                continue
            if is_temporary(entry.name):
                continue
            try:
                if entry.is_dir():  # follows links; loops are cut by the (device, inode) set
                    key = _dir_key(Path(entry.path))
                    if key in seen or key in skip:
                        continue
                    seen.add(key)
                    stack.append(_entries(Path(entry.path)))
                elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                    yield Path(entry.path)
            except OSError:  # vanished or unreadable entry
                continue
    finally:
        for it in stack:
            it.close()


def _entries(folder: Path) -> Generator[os.DirEntry, None, None]:
    """A folder's entries: the first `SORTED_ENTRIES` in name order, any further ones in the file system's order
    (so that a folder of a million files costs no more memory than one of `SORTED_ENTRIES`)."""
    with os.scandir(folder) as it:
        head = sorted(itertools.islice(it, SORTED_ENTRIES), key=lambda e: e.name)
        yield from head
        yield from it


def _dir_key(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_dev, st.st_ino


def read_list(source: str, stdin: TextIO | None = None) -> Iterator[Path]:
    """Paths from a text file, one a line ('-' reads stdin); blank lines and lines starting with '#' are skipped."""
    if source == "-":
        fh = stdin or sys.stdin
        for line in fh:
            if line.strip() and not line.lstrip().startswith("#"):
                yield Path(line.rstrip("\r\n"))
        return
    path = Path(source)
    if not path.is_file():
        raise InputError(f"--from-list {source}: no such file")
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip() and not line.lstrip().startswith("#"):
                    yield Path(line.rstrip("\r\n"))
    except UnicodeDecodeError:
        raise InputError(f"--from-list {source}: not a UTF-8 text file of paths") from None


def common_base(inputs: Iterable[Path]) -> Path:
    """The folder output names are relative to: the deepest folder holding every input (a folder holds itself)."""
    dirs = [os.path.abspath(p) if p.is_dir() else os.path.dirname(os.path.abspath(p)) for p in inputs]
    return Path(os.path.commonpath(dirs)) if dirs else Path.cwd()


def output_name(path: Path, base: Path) -> str:
    """The unique output name of `path` (see the module docstring); pure function of the file system state."""
    absolute = os.path.abspath(path)
    rel = os.path.relpath(absolute, base)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):  # outside the base: the absolute path, without its root
        rel = absolute.lstrip(os.sep)
    parts = Path(rel).parts
    stem, suffix = os.path.splitext(parts[-1])
    leaf = parts[-1] if suffix and _stem_is_shared(Path(absolute), stem) else stem or parts[-1]
    return "/".join(_short(part) for part in (*parts[:-1], leaf))


def _stem_is_shared(path: Path, stem: str) -> bool:
    """Whether another file could get the same stem-only name: a sibling `stem.<image suffix>` or a file `stem`."""
    folder = path.parent
    if (folder / stem).is_file():
        return True
    return any(stem + s != path.name and (folder / (stem + s)).is_file() for s in _SUFFIX_VARIANTS)


def _short(part: str) -> str:
    if len(part.encode()) <= MAX_NAME_BYTES:
        return part
    digest = hashlib.sha1(part.encode(errors="surrogateescape")).hexdigest()[:16]
    head = part.encode()[: MAX_NAME_BYTES - 20].decode(errors="ignore")
    return f"{head}~{digest}"


def iter_sources(
    inputs: Sequence[str | os.PathLike],
    from_list: str | None = None,
    exclude: Sequence[Path] = (),
    stdin: TextIO | None = None,
) -> Iterator[Source]:
    """Every input file with its output name, lazily: the command line's files and folders, then the list's paths.

    Names are relative to the inputs' common folder (`common_base`); paths read from a list are named relative to
    the current folder. A missing input on the command line is yielded (and reported when it is decoded).
    """
    given = [Path(p) for p in inputs]
    base = common_base([p for p in given if p.exists()] or [Path.cwd()])
    for p in given:
        if p.is_dir():
            try:
                for f in walk_images(p, exclude):
                    yield Source(f, output_name(f, base))
            except OSError as exc:
                raise InputError(f"{p}: cannot read the folder ({exc.strerror})") from None
        else:
            yield Source(p, output_name(p, base))
    if from_list is not None:
        cwd = Path.cwd()
        for p in read_list(from_list, stdin):
            yield Source(p, output_name(p, cwd))
