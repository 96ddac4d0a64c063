"""Atomic, no-clobber writes: an output file is either whole or absent."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from inspector.errors import InspectorError


def check_writable(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Refuse to overwrite ``path`` unless ``force``; refuse a missing parent folder."""
    path = Path(path)
    if path.is_dir():
        raise InspectorError(f"{path} is a directory; give a file name to write to")
    if path.exists() and not force:
        raise InspectorError(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.exists():
        raise InspectorError(f"folder {path.parent} does not exist; create it first")
    return path


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash or an exception while writing leaves no partial file behind and
    leaves any existing file untouched.
    """
    path = check_writable(path, force=force)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it private; the result is an ordinary file
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_atomic(
    path: str | os.PathLike[str], write: Callable[[Path], None], *, force: bool = False
) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path, force=force) as tmp:
        write(tmp)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, force: bool = False) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), force=force)
