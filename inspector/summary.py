"""Text summaries for the terminal; kept for imports of the old name, the tables live in
:mod:`inspector.render.tables`."""

from __future__ import annotations

from inspector.render.tables import format_parameters, format_summary

__all__ = ["format_parameters", "format_summary"]
