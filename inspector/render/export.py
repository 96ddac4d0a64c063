"""Static output through a headless Chrome/Chromium: the HTML report printed to PDF, and
every figure as a PNG image through kaleido (which drives the same browser)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from inspector.errors import InspectorError
from inspector.fileio import (
    atomic_path,
    check_output_folder,
    describe_os_error,
    fsync_file,
    make_output_folder,
    read_prefix,
    refuse_inputs,
    temporary_name,
)
from inspector.render.html import Section

# The report's section ids. PNG figures are named `NN-<id>.png`; a figure of an earlier report
# that the new one lacks is removed only when its id is one of these (and it is a PNG).
SECTION_IDS = (
    "run",
    "summary",
    "architecture",
    "training",
    "weights",
    "dead",
    "importance",
    "whatif",
    "pruning",
    "activations",
    "layers",
)
_FIGURE_NAME = re.compile(rf"^\d{{2,}}-(?:{'|'.join(SECTION_IDS)})\.png$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_own_pdf(path: Path) -> bool:
    """Chromium's PDF keeps no marker we can read back cheaply, so any PDF counts as ours."""
    return read_prefix(path).startswith(b"%PDF-")


def find_browser() -> str:
    """A Chrome or Chromium executable, for PDF and PNG output."""
    candidates = [os.environ.get("BROWSER_PATH", "")] + [
        shutil.which(n) or ""
        for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
    ]
    for c in candidates:
        if c and os.path.exists(c):
            return c
    raise InspectorError(
        "PDF and PNG reports need Chrome or Chromium (Debian: apt-get install chromium; "
        "or set BROWSER_PATH); HTML, md and json reports work without one"
    )


def write_pdf(html_text: str, path: Path, *, force: bool = False) -> Path:
    """Print the HTML report to PDF with headless Chromium, after its figures have drawn."""
    browser = find_browser()
    with (
        tempfile.TemporaryDirectory() as tmp,
        atomic_path(path, force=force, ours=is_own_pdf) as out,
    ):
        page = Path(tmp) / "report.html"
        page.write_text(html_text, encoding="utf-8")
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp}/profile",
            "--no-pdf-header-footer",
            "--virtual-time-budget=20000",
            f"--print-to-pdf={out}",
            page.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            raise InspectorError(
                f"{browser} could not print the report to PDF: "
                f"{(proc.stderr.strip().splitlines() or ['no output'])[-1][:200]}"
            )
    return path


def _figure_files(directory: Path, names: Iterable[str] = ()) -> list[Path]:
    """The files in ``directory`` named like a report's figures, or named in ``names``."""
    if not directory.is_dir():
        return []
    names = set(names)
    return sorted(p for p in directory.iterdir() if _FIGURE_NAME.match(p.name) or p.name in names)


def _is_png(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE
    except OSError:
        return False


def check_png_folder(
    directory: str | os.PathLike[str],
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
    names: Iterable[str] = (),
) -> Path:
    """Raise unless :func:`write_pngs` could write ``names`` into ``directory``; creates nothing.

    The folder may hold other files: only figure files (``NN-section.png``, PNG images)
    are replaced, and only with ``force``.
    """
    directory = Path(directory)
    check_output_folder(directory)
    figures = _figure_files(directory, names)
    for figure in figures:
        refuse_inputs(figure, inputs)
    if figures and not force:
        raise InspectorError(
            f"{directory} already holds report figures ({figures[0].name}); pass --force to overwrite them"
        )
    foreign = [f for f in figures if f.is_symlink() or not f.is_file() or not _is_png(f)]
    if foreign:
        raise InspectorError(
            f"{foreign[0]} is not a figure dense-inspector wrote; move it away or choose another --out"
        )
    return directory


def write_pngs(sections: list[Section], directory: Path, *, force: bool = False) -> list[Path]:
    """Every figure as ``NN-section.png`` in ``directory``, through kaleido.

    Each image is rendered to a temporary and renamed into place, so every figure file is
    whole; with ``force``, figure files of an earlier report that this one does not have
    are removed. Other files in the folder are never touched.
    """
    find_browser()
    figures = [(s.id, b) for s in sections for b in s.blocks if isinstance(b, go.Figure)]
    names = [f"{i:02d}-{sid}.png" for i, (sid, _) in enumerate(figures, start=1)]
    directory = check_png_folder(directory, force=force, names=names)
    old = _figure_files(directory)
    make_output_folder(directory)
    temps = [directory / temporary_name() for _ in figures]
    try:
        try:
            pio.write_images([fig for _, fig in figures], temps, format="png", width=1100, scale=1)
        except OSError:
            raise
        except Exception as exc:  # kaleido reports browser problems in its own types
            raise InspectorError(f"kaleido could not render the figures: {str(exc).splitlines()[0][:200]}") from None
        for tmp, name in zip(temps, names):
            fsync_file(tmp)
            os.replace(tmp, directory / name)
    except OSError as exc:
        raise InspectorError(f"could not write the figures into {directory}: {describe_os_error(exc)}") from None
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
    for stale in old:
        if stale.name not in names:
            with contextlib.suppress(OSError):
                stale.unlink()
    return [directory / name for name in names]
