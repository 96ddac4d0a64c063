"""Writing a report: the format from the file name, the text of each format, atomic writes
that replace only a report this tool wrote (through :mod:`inspector.fileio`)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from inspector.analysis import Analysis
from inspector.analysis.compare import Comparison
from inspector.checks import printable_lines
from inspector.errors import InspectorError
from inspector.fileio import (
    read_prefix,
    write_text_atomic,
)
from inspector.render.compare import comparison_html, comparison_markdown, comparison_sections
from inspector.render.export import is_own_pdf, write_pdf, write_pngs
from inspector.render.html import HTML_MARKER, analysis_sections, to_html
from inspector.render.markdown import MD_MARKER, to_markdown
from inspector.results import to_json_document

FORMATS = ("html", "md", "json", "pdf", "png")
_EXTENSIONS = {".html": "html", ".htm": "html", ".md": "md", ".json": "json", ".pdf": "pdf", ".png": "png"}


def format_for(path: Path, requested: str | None) -> str:
    """The report format: ``requested``, else from the extension of ``path``."""
    fmt = requested or _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise InspectorError(
            f"{path}: cannot tell the report format from the extension; pass --format ({', '.join(FORMATS)})"
        )
    if fmt not in FORMATS:
        raise InspectorError(f"unknown report format {fmt!r}; choose from {', '.join(FORMATS)}")
    return fmt


def is_own_report(path: Path, fmt: str) -> bool:
    """Whether ``path`` is a ``fmt`` report this module wrote, from its first bytes only.

    HTML carries a generator meta, Markdown a leading comment, JSON starts with its schema key.
    Chromium's PDF keeps no marker we can read back cheaply, so any PDF counts as ours.
    """
    head = read_prefix(path)
    if fmt == "html":
        return HTML_MARKER in head
    if fmt == "md":
        return head.startswith(MD_MARKER.encode())
    if fmt == "json":
        return head.startswith(b'{"schema_version": ')
    if fmt == "pdf":
        return is_own_pdf(path)
    return False


def render_text(analysis: Analysis | Comparison, fmt: str) -> str:
    """The report as text, for the text formats (html, md, json)."""
    if fmt == "json":
        return to_json_document(analysis)
    if fmt == "md":  # names from files are data: no control character of theirs reaches a terminal
        text = comparison_markdown(analysis) if isinstance(analysis, Comparison) else to_markdown(analysis)
        return printable_lines(text)
    if fmt == "html":
        return comparison_html(analysis) if isinstance(analysis, Comparison) else to_html(analysis)
    raise InspectorError(f"{fmt} reports are binary; give a file name to --out, not '-'")


def write_report(
    analysis: Analysis | Comparison, path: str | os.PathLike[str], fmt: str | None = None, *, force: bool = False
) -> Path:
    """Write ``analysis`` (or a comparison) as ``fmt`` (default: from the extension), atomically."""
    path = Path(path)
    fmt = format_for(path, fmt)
    if fmt == "png":
        sections = comparison_sections(analysis) if isinstance(analysis, Comparison) else analysis_sections(analysis)
        write_pngs(sections, path, force=force)
        return path
    ours = functools.partial(is_own_report, fmt=fmt)
    if fmt == "pdf":
        text = comparison_html(analysis) if isinstance(analysis, Comparison) else to_html(analysis)
        return write_pdf(text, path, force=force)
    return write_text_atomic(path, render_text(analysis, fmt), force=force, ours=ours)
