"""Atomic file-system writes: temp file in the same directory, fsync, ``os.replace``.

A crash at any instant leaves either the old content or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: Path, *, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for the caller to write; when the block ends the file is fsynced and
    renamed over ``path`` (readers see the old or the new file, never a partial one). On any error, or
    KeyboardInterrupt, the temp file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a partial one."""
    with atomic_output(path, mode=mode) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield a temp directory beside ``final``; on success it is renamed to ``final`` atomically.

    On any error (or KeyboardInterrupt) the temp directory is removed, so no half-written result is left.
    ``final`` must not exist when the block ends.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial"))
    try:
        yield tmp
        os.rename(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: Path) -> tuple[str, int]:
    """Return (hex sha256, length in bytes) of a file, read in chunks."""
    digest = hashlib.sha256()
    length = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            length += len(chunk)
    return digest.hexdigest(), length
