"""Reports; kept for imports of the old name. The code lives in :mod:`inspector.render`, one job per module."""

from __future__ import annotations

from inspector.render.compare import (
    comparison_html,
    comparison_markdown,
    comparison_rows,
    comparison_sections,
    shift_rows,
)
from inspector.render.export import SECTION_IDS, check_png_folder, find_browser, write_pdf, write_pngs
from inspector.render.html import (
    WHATIF_FIGURES,
    Section,
    analysis_sections,
    render_html,
    to_html,
    token_blocks,
    whatif_blocks,
)
from inspector.render.live import ACTIVATION_STATISTICS, run_html, run_sections
from inspector.render.markdown import md_code, md_escape, to_markdown
from inspector.render.rows import (
    census_rows,
    importance_rows,
    pruning_rows,
    top_token_rows,
    whatif_table,
    whatif_text,
)
from inspector.render.write import FORMATS, format_for, is_own_report, render_text, write_report

__all__ = [
    "ACTIVATION_STATISTICS",
    "FORMATS",
    "SECTION_IDS",
    "WHATIF_FIGURES",
    "Section",
    "analysis_sections",
    "census_rows",
    "check_png_folder",
    "comparison_html",
    "comparison_markdown",
    "comparison_rows",
    "comparison_sections",
    "find_browser",
    "format_for",
    "importance_rows",
    "is_own_report",
    "md_code",
    "md_escape",
    "pruning_rows",
    "render_html",
    "render_text",
    "run_html",
    "run_sections",
    "shift_rows",
    "to_html",
    "to_markdown",
    "token_blocks",
    "top_token_rows",
    "whatif_blocks",
    "whatif_table",
    "whatif_text",
    "write_pdf",
    "write_pngs",
    "write_report",
]
