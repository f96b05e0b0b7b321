"""Files that never look complete before they are: write under a temporary name in the same folder, then rename.

A kill at any moment leaves either the old file or the new one (os.replace is atomic on one file system), plus at
worst a hidden temporary file `.<name>.partial-<pid>`, never a truncated file under the real name
(pygeometry.data.hdf5.remove_stale_partials deletes those of dead processes).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


def partial_path(path) -> Path:
    """The temporary name of `path` while this process writes it: `.<name>.partial-<pid>` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path next to `path` to write to (by any means: savefig, net.save, h5py); on success it is
    renamed to `path`, on an exception it is removed and the exception propagates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_atomic(path, data) -> None:
    """Write text (str) or bytes to `path` atomically (see atomic_output)."""
    with atomic_output(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)


def replace_block(path, begin: str, end: str, text: str) -> None:
    """Replace what lies between the lines `begin` and `end` of a text file (a generated block of README.md) by
    `text`, atomically. ValueError (naming the file and both markers) unless each marker is there exactly once."""
    path = Path(path)
    content = path.read_text()
    if content.count(begin) != 1 or content.count(end) != 1:
        raise ValueError(f"{path} needs the lines {begin!r} and {end!r} once each")
    head, rest = content.split(begin)
    _, tail = rest.split(end)
    write_atomic(path, f"{head}{begin}\n{text.strip(chr(10))}\n{end}{tail}")
