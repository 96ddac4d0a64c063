"""Rendering: results in, text, pages and images out; nothing here computes an analysis number.

One job per module:

* :mod:`~inspector.render.rows`: the table rows of an analysis's sections (HTML and Markdown share them);
* :mod:`~inspector.render.html`: the self-contained HTML report (sections, figures, inlined plotly.js);
* :mod:`~inspector.render.markdown`: the Markdown report;
* :mod:`~inspector.render.compare`: the report of a comparison of two analyses;
* :mod:`~inspector.render.live`: the report of training runs;
* :mod:`~inspector.render.export`: PDF and PNG through a headless Chrome/Chromium and kaleido;
* :mod:`~inspector.render.write`: the format from the file name, atomic writes of our own reports only;
* :mod:`~inspector.render.tables`: every table the CLI prints (layer, inventory and summary tables).

From Python::

    html_text = inspector.to_html(analysis)                  # or to_html(analysis, "report.html")
    markdown = inspector.to_markdown(analysis)
"""

from __future__ import annotations

import os
from pathlib import Path

from inspector.analysis import Analysis
from inspector.checks import printable_lines
from inspector.render import html, markdown
from inspector.render.write import FORMATS, format_for, is_own_report, render_text, write_report

__all__ = ["FORMATS", "format_for", "is_own_report", "render_text", "to_html", "to_markdown", "write_report"]


def to_html(analysis: Analysis, path: str | os.PathLike[str] | None = None, *, force: bool = False) -> str:
    """The self-contained HTML report of ``analysis``; with ``path``, also written there (atomically).

    ``force`` replaces an existing file only if it is a report this tool wrote.
    """
    if path is not None:
        write_report(analysis, path, "html", force=force)
        return Path(path).read_text(encoding="utf-8")
    return html.to_html(analysis)


def to_markdown(analysis: Analysis) -> str:
    """The Markdown report of ``analysis`` (tables and findings, for pull requests and CI logs); control
    characters in names from files escaped (``\\x1b``), so that printing it cannot drive a terminal."""
    return printable_lines(markdown.to_markdown(analysis))
