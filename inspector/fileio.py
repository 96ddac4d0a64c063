"""Safe writes: an output file is either whole or absent, and nothing else is ever touched.

Every write goes to a temporary file beside its target, named
``.inspector-<pid>-<hex>.tmp``, and is renamed onto the target only when complete.
A run killed mid-write leaves such a file behind; the next write into the same
folder removes it once the process named by ``<pid>`` is gone (a running write's
temporary is never touched). That one naming scheme is the only pattern this
module ever deletes by: a user's own files are left alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from inspector.errors import InspectorError

_TEMP_RE = re.compile(r"^\.inspector-(\d+)-[0-9a-f]+\.tmp$")
# mkstemp's names from dense-inspector 0.x (`.<target>.<8 random>.tmp`); cleaned for the same target only.
_LEGACY_TEMP = r"^\.{name}\.[a-z0-9_]{{8}}\.tmp$"


def temporary_name() -> str:
    """A fresh name in the scheme that :func:`remove_stale_temporaries` recognises."""
    return f".inspector-{os.getpid()}-{secrets.token_hex(6)}.tmp"


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process; unsure counts as alive."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    if sys.platform.startswith("linux"):
        # A killed child stays a zombie until its parent reaps it; it will never finish its write.
        with contextlib.suppress(OSError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            return stat[stat.rindex(")") + 2] != "Z"
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str], *, legacy_target: str | None = None) -> list[Path]:
    """Delete the temporaries that killed runs left in ``folder``; return what was removed.

    Only names in this module's scheme whose process has exited are removed, plus, when
    ``legacy_target`` is given, the older ``.<legacy_target>.XXXXXXXX.tmp`` files of that target.
    """
    folder = Path(folder)
    legacy = re.compile(_LEGACY_TEMP.format(name=re.escape(legacy_target))) if legacy_target else None
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _TEMP_RE.fullmatch(name)
        stale = (match is not None and not process_alive(int(match.group(1)))) or (
            legacy is not None and legacy.fullmatch(name) is not None
        )
        path = folder / name
        if stale and path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):  # another run cleaning the same folder, or no permission
                path.unlink()
                removed.append(path)
    return removed


def describe_os_error(exc: OSError) -> str:
    """``Permission denied``-style text for ``exc``, without the errno prefix."""
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    return (exc.strerror or str(exc)).rstrip(".")


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_inputs(path: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse to replace ``path`` when it is one of the command's own inputs."""
    for source in inputs:
        if same_file(path, source):
            raise InspectorError(f"{path} is an input of this command; write the output somewhere else")


def first_non_folder(path: Path) -> Path | None:
    """The nearest existing one of ``path`` and its parents when it is not a folder (a regular file on
    the way: ``file.txt/run``), else ``None``; what a folder created with its parents may not go through."""
    for folder in (path, *path.parents):
        if folder.exists():
            return None if folder.is_dir() else folder
    return None


def probe_folder(folder: str | os.PathLike[str]) -> Path:
    """Make sure a file can really be created in ``folder`` (permissions, read-only mounts, quotas)."""
    folder = Path(folder)
    if not folder.exists():
        raise InspectorError(f"folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise InspectorError(f"{folder} is not a folder; choose another output path")
    probe = folder / temporary_name()
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise InspectorError(
            f"cannot write in folder {folder}: {describe_os_error(exc)}; choose another output path"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return folder


def check_writable(
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
    ours: Callable[[Path], bool] | None = None,
) -> Path:
    """Raise unless ``path`` can be written: not a folder, not an input, new or ``force``, folder writable.

    With ``force``, an existing file is replaced only when ``ours(path)`` recognises it as one
    this tool wrote (``--force`` never deletes a user's file). Call it before long work, so
    that a bad output path fails in seconds, not after training.
    """
    if str(path) == "":
        raise InspectorError("empty path; give a file name to write to")
    path = Path(path)
    if path.is_dir():
        raise InspectorError(f"{path} is a directory; give a file name to write to")
    refuse_inputs(path, inputs)
    if path.exists() and not path.is_file():
        # A device node or FIFO (/dev/null, a pipe) would be swapped for a plain file by the rename.
        raise InspectorError(f"{path} is not a regular file; choose another output path")
    if (path.exists() or path.is_symlink()) and not force:
        raise InspectorError(f"{path} already exists; pass --force to overwrite it")
    if path.exists() and ours is not None and not ours(path):
        raise InspectorError(f"{path} was not written by dense-inspector; move it away or choose another --out")
    probe_folder(path.parent)
    return path


def read_prefix(path: Path, size: int = 4096) -> bytes:
    """The first ``size`` bytes of a regular file (b"" when unreadable): enough to recognise our formats."""
    if not path.is_file():
        return b""
    try:
        with path.open("rb") as fh:
            return fh.read(size)
    except OSError:
        return b""


def fsync_file(path: Path) -> None:
    # The rename must not reach the disk before the data does (a power cut would leave an empty file).
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, force: bool = False, ours: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    A crash or an exception while writing leaves any existing file untouched; a
    kill leaves at most a temporary, which the next write into the folder removes.
    Errors from the file system become an :class:`InspectorError` naming ``path``.
    """
    path = check_writable(path, force=force, ours=ours)
    remove_stale_temporaries(path.parent, legacy_target=path.name)
    tmp = path.parent / temporary_name()
    try:
        # 0o666 and the umask give an ordinary file's permissions, as a plain open() would.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise InspectorError(f"could not write {path}: {describe_os_error(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_atomic(
    path: str | os.PathLike[str],
    write: Callable[[Path], object],
    *,
    force: bool = False,
    ours: Callable[[Path], bool] | None = None,
) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path, force=force, ours=ours) as tmp:
        write(tmp)
    return Path(path)


def write_text_atomic(
    path: str | os.PathLike[str], text: str, *, force: bool = False, ours: Callable[[Path], bool] | None = None
) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), force=force, ours=ours)


def make_output_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed (its parent must exist), check it is writable, clean old temporaries."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InspectorError(f"{folder} exists and is not a folder; choose another --out")
    if not folder.exists():
        probe_folder(folder.parent)
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise InspectorError(f"cannot create folder {folder}: {describe_os_error(exc)}") from None
    probe_folder(folder)
    remove_stale_temporaries(folder)
    return folder


def check_output_folder(folder: str | os.PathLike[str]) -> Path:
    """Raise unless :func:`make_output_folder` would succeed; creates nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InspectorError(f"{folder} exists and is not a folder; choose another --out")
    probe_folder(folder if folder.exists() else folder.parent)
    return folder
